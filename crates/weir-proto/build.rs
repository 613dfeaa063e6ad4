//! Generates Rust code for the .proto files with protox (a pure-Rust protobuf
//! compiler), so a fresh machine needs only cargo: no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/loggregator-api/v2/envelope.proto",
        "proto/loggregator-api/v2/ingress.proto",
        "proto/loggregator-api/v2/egress.proto",
        "proto/weir/v1/weir.proto",
    ];
    // The upstream files import "loggregator-api/v2/envelope.proto", so the include
    // root is the parent of the loggregator-api folder (PROTOCOLS.md section 1).
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".loggregator.v2.Log.payload")
        // Decode errors answer InvalidArgument, not tonic's Internal (src/codec.rs).
        .codec_path("crate::codec::WeirCodec")
        .compile_fds(fds)?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
