// Writes `<file>.br` (brotli, quality 11) and `<file>.gz` (gzip -9) beside
// each file named on the command line, for the server to send to browsers
// that take them (src/http/assets.rs). Node's own zlib: nothing to install.
import { readFileSync, writeFileSync } from "node:fs";
import { brotliCompressSync, gzipSync, constants } from "node:zlib";

for (const file of process.argv.slice(2)) {
  const body = readFileSync(file);
  writeFileSync(`${file}.br`, brotliCompressSync(body, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 11,
      [constants.BROTLI_PARAM_SIZE_HINT]: body.length,
    },
  }));
  writeFileSync(`${file}.gz`, gzipSync(body, { level: 9 }));
}
