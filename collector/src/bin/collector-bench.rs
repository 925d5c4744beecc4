//! Prints the collector's throughput figures: parse rate of both scrape formats
//! (samples/s on one core) and end-to-end scrape capacity (targets/min on one core).

fn main() {
    collector::bench::main();
}
