//! The embedded default database: a private PostgreSQL cluster under the data
//! directory, initialised and started on first use and left running, so its
//! data survives restarts of Tollgate. It listens on a Unix socket in its own
//! directory and on no TCP port, so clusters of several checkouts never
//! collide. PostgreSQL refuses to run as root, so as root the cluster belongs
//! to, and runs as, the `postgres` user.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const ROLE: &str = "tollgate";
const DATABASE: &str = "tollgate";

pub struct EmbeddedPg {
    root: PathBuf,
    port: u16,
    bin_dir: PathBuf,
    run_as_postgres: bool,
}

impl EmbeddedPg {
    pub fn new(data_dir: &Path, port: u16) -> anyhow::Result<Self> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let run_as_postgres = unsafe { libc::geteuid() } == 0;
        let data_dir = std::path::absolute(data_dir)?;
        let root = if run_as_postgres {
            // The `postgres` user may not be able to reach a checkout (a
            // home or temporary directory is often private), so as root the
            // cluster lives under /var/lib/tollgate, one per data directory.
            let id =
                hex::encode(&crate::crypto::sha256(data_dir.to_string_lossy().as_bytes())[..6]);
            PathBuf::from("/var/lib/tollgate").join(format!("pg-{id}"))
        } else {
            data_dir.join("postgres")
        };
        Ok(Self {
            root,
            port,
            bin_dir: find_bin_dir()?,
            run_as_postgres,
        })
    }

    fn pgdata(&self) -> PathBuf {
        self.root.join("data")
    }

    fn url_for(&self, database: &str) -> String {
        let mut url = url::Url::parse(&format!("postgres://{ROLE}@localhost/{database}"))
            .expect("literal URL");
        url.query_pairs_mut()
            .append_pair("host", &self.root.to_string_lossy())
            .append_pair("port", &self.port.to_string());
        url.to_string()
    }

    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// The URL of the maintenance database, where test databases are made.
    pub fn admin_url(&self) -> String {
        self.url_for("postgres")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path).current_dir("/");
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, mut cmd: Command, what: &str) -> anyhow::Result<()> {
        let out = cmd
            .output()
            .with_context(|| format!("could not run {what}"))?;
        if !out.status.success() {
            bail!(
                "{what} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn initialise(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        if self.run_as_postgres {
            self.run(
                {
                    let mut c = Command::new("chown");
                    c.arg("-R").arg("postgres:postgres").arg(&self.root);
                    c
                },
                "chown",
            )?;
        }
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(self.pgdata()).args([
            "-U",
            ROLE,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ]);
        self.run(cmd, "initdb")?;
        tracing::info!(dir = %self.pgdata().display(), "initialised the embedded PostgreSQL cluster");
        Ok(())
    }

    fn is_running(&self) -> bool {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("status").arg("-D").arg(self.pgdata());
        cmd.output().map(|o| o.status.success()).unwrap_or(false)
    }

    fn start(&self) -> anyhow::Result<()> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(self.pgdata())
            .arg("-l")
            .arg(self.root.join("postgres.log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses='' -c unix_socket_directories='{}' -c max_connections=200{}",
                self.port,
                self.root.display(),
                // Statement statistics, for the gateway benchmark's profile,
                // when the server has the extension (Debian's does).
                if self.bin_dir.join("../lib/pg_stat_statements.so").exists() {
                    " -c shared_preload_libraries=pg_stat_statements"
                } else {
                    ""
                }
            ));
        self.run(cmd, "pg_ctl start")
            .with_context(|| format!("see {}", self.root.join("postgres.log").display()))?;
        tracing::info!(socket_dir = %self.root.display(), "started the embedded PostgreSQL cluster");
        Ok(())
    }

    pub fn stop(&self) -> anyhow::Result<()> {
        if !self.pgdata().join("PG_VERSION").exists() || !self.is_running() {
            return Ok(());
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(self.pgdata())
            .args(["-m", "fast", "-w"]);
        self.run(cmd, "pg_ctl stop")
    }

    /// Stops the cluster in immediate mode: no checkpoint, as if the
    /// server crashed (it replays its write-ahead log when started again).
    pub fn crash(&self) -> anyhow::Result<()> {
        if !self.pgdata().join("PG_VERSION").exists() || !self.is_running() {
            return Ok(());
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop").arg("-D").arg(self.pgdata()).args(["-m", "immediate", "-w"]);
        self.run(cmd, "pg_ctl stop -m immediate")
    }

    /// Initialises and starts the cluster as needed; returns the database URL.
    pub async fn ensure_running(&self) -> anyhow::Result<String> {
        if !self.pgdata().join("PG_VERSION").exists() {
            self.initialise()?;
        }
        if !self.is_running() {
            self.start()?;
        }
        self.ensure_database().await?;
        Ok(self.url())
    }

    async fn ensure_database(&self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut last_error = None;
        for _ in 0..50 {
            match sqlx::PgConnection::connect(&self.admin_url()).await {
                Ok(mut conn) => {
                    let exists: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                    )
                    .bind(DATABASE)
                    .fetch_one(&mut conn)
                    .await?;
                    if !exists {
                        sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
                            .execute(&mut conn)
                            .await?;
                    }
                    return Ok(());
                }
                Err(e) => last_error = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last_error.expect("at least one attempt"))
            .context("the embedded PostgreSQL did not accept connections")
    }
}

/// PostgreSQL's server programs: `TOLLGATE_PG_BIN`, or Debian's newest
/// `/usr/lib/postgresql/<version>/bin`.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("TOLLGATE_PG_BIN") {
        return Ok(dir.into());
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    match candidates.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "DATABASE_URL is unset and no PostgreSQL server is installed for the embedded default \
             (looked in /usr/lib/postgresql/*/bin; set TOLLGATE_PG_BIN, or install the postgresql package)"
        ),
    }
}
