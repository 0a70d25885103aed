//! Which request paths the gateway accepts at all.
//!
//! The gateway routes on the path as it arrives; an upstream may read the
//! same bytes differently (a WHATWG-style URL parser turns `\` into `/` and
//! resolves `..`, many servers decode `%2f` or `%2e`). A path that two
//! readers could disagree on is refused before routing, so a key allowed one
//! route can never reach another route's upstream, or another path on an
//! upstream host. The proxy checks the upstream URL it builds as well
//! ([`super::routes::Route::upstream_for`]).

/// Why a path is refused, or `Ok` when it is plain.
pub fn check(path: &str) -> Result<(), &'static str> {
    if path.contains('\\') {
        return Err("a backslash");
    }
    let lower = path.to_ascii_lowercase();
    // Encoded `.`, `/`, `\` and `%` (the last so that nothing decodes twice
    // into one of the others).
    if ["%2e", "%2f", "%5c", "%25"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return Err("an encoded dot, slash, backslash or percent sign");
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("a dot segment");
    }
    if path.bytes().any(|b| b.is_ascii_control()) || lower.contains("%00") {
        return Err("a control character");
    }
    // `;` (path parameters: `..;` is a dot segment to Tomcat and Jetty) and
    // empty segments (merged by many servers) read differently upstream.
    if path.contains(';') || path.contains("//") {
        return Err("a semicolon or an empty segment");
    }
    // A `%` must start an escape, and an escape must not spell a character
    // that needs none (`%34` is `4` to the upstream, not to the router).
    let b = path.as_bytes();
    for (i, _) in path.match_indices('%') {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(c) if !(c.is_ascii_alphanumeric() || b"-._~".contains(&c)) => {}
            _ => return Err("a malformed or needless percent escape"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn plain_paths_pass() {
        for p in [
            "/v1/ping",
            "/v1/models/gpt-4o/run",
            "/v1/files/a.b.c",
            "/v1/x/...",
            "/v1/q%20r",
            "/v1/x/.hidden",
        ] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn paths_that_readers_could_disagree_on_are_refused() {
        for p in [
            "/v1/cheap/..\\pricey\\run",
            "/v1/x/..\\..\\anything",
            "/v1/cheap\\..",
            "/v1/cheap/%5cpricey",
            "/v1/cheap/%5Cpricey",
            "/v1/cheap%2f..%2fpricey",
            "/v1/cheap%2F..%2Fpricey",
            "/v1/cheap/%2e%2e/pricey",
            "/v1/cheap/%2E%2E/pricey",
            "/v1/cheap/.%2e/pricey",
            "/v1/cheap/%2e./pricey",
            "/v1/cheap/../pricey",
            "/v1/cheap/./pricey",
            "/v1/cheap/..",
            "/v1/cheap/%252e%252e/pricey",
            "/v1/cheap/%00",
            "/v1/cheap/..;/pricey/run",
            "/v1/cheap;x/run",
            "/v1/llm//gpt4/chat",
            "/v1/llm/gpt%34/chat",
            "/v1/cheap/%%32%65%%32%65/pricey",
            "/v1/cheap/%zz",
            "/v1/cheap/%4",
        ] {
            assert!(check(p).is_err(), "{p}");
        }
    }
}
