fn main() {
    std::process::exit(roamcore_victron::cli::main());
}
