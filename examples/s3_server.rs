//! The test suite's S3-protocol server (s3s over s3s-fs, in a temp dir) as
//! a program of its own, for trying a store by hand and for the backup
//! benchmark: `cargo run --release --example s3_server -- BUCKET` starts it
//! with BUCKET created, prints the store URL and the environment a
//! `flightpath` run needs to sign its requests, and serves until killed.
//! Objects live in a temp dir deleted when it stops.

#[allow(dead_code)]
#[path = "../tests/support/s3.rs"]
mod s3;

fn main() {
    let bucket = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "flightpath".into());
    let server = s3::S3Server::start();
    server.create_bucket(&bucket);
    println!("store: {}", server.url(&bucket, ""));
    println!("endpoint: {}", server.endpoint());
    // Buckets are directories here: a benchmark makes one by `mkdir`.
    println!(
        "buckets: {}",
        server
            .bucket_dir(&bucket)
            .parent()
            .expect("a bucket is a directory in the root")
            .display()
    );
    for (key, value) in server.env() {
        println!("export {key}={value}");
    }
    loop {
        std::thread::park();
    }
}
