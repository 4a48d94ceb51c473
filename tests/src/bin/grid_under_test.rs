//! The `grid` command line, built in the test package so that end-to-end
//! tests can start it as a real process and kill it.

fn main() -> std::process::ExitCode {
    grid_cli::main()
}
