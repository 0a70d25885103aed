use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = tollgate::cli::Cli::parse();
    tollgate::telemetry::init(&tollgate::config::LogFormat::from_env());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(tollgate::cli::run(cli))
}
