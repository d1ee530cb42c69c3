fn main() {
    std::process::exit(tidemail::cli::main());
}
