//! The `flightpath` binary: parse the command line, run, exit with its code.

fn main() -> std::process::ExitCode {
    let code = flightpath::cli::run(std::env::args_os().collect());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
