// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    // Generic metadata by direct accessor calls, not by demangling a type name at run time: a
    // demangled name's conformance requirements are looked up by scanning every conformance
    // record of the binary, once per new type in each fresh process (docs/decisions.md).
    .unsafeFlags(["-Xfrontend", "-disable-concrete-type-metadata-mangled-name-accessors"]),
]

let package = Package(
    name: "veil",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "veil", targets: ["veil"]),
        .library(name: "VeilCore", targets: ["VeilCore"]),
        .library(name: "VeilAttestation", targets: ["VeilAttestation"]),
        .library(name: "VeilManifest", targets: ["VeilManifest"]),
        .library(name: "VeilAPI", targets: ["VeilAPI"]),
        .library(name: "VeilCoordinator", targets: ["VeilCoordinator"]),
        .library(name: "VeilClient", targets: ["VeilClient"]),
        .library(name: "VeilLauncher", targets: ["VeilLauncher"]),
        .library(name: "VeilImage", targets: ["VeilImage"]),
        .library(name: "VeilMesh", targets: ["VeilMesh"]),
        .library(name: "VeilKubernetes", targets: ["VeilKubernetes"]),
        .executable(name: "veil-launcher", targets: ["veil-launcher"]),
        .executable(name: "veil-bench", targets: ["veil-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        // Without its default traits: BinaryDelimitedStreams imports Foundation, which veil-launcher does not link.
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0", traits: []),
    ],
    targets: [
        .target(name: "VeilCore", swiftSettings: strict),
        .target(
            name: "VeilAttestation",
            dependencies: [
                "VeilCore",
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "VeilManifest",
            dependencies: [
                "VeilCore",
                "VeilAttestation",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strict
        ),
        // JOSE for the protocols others speak: base64url, RFC 8785 JCS, JWE to RSA/EC keys, ES256 JWTs.
        .target(
            name: "VeilJOSE",
            dependencies: [
                "VeilCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .target(name: "VeilAPI", dependencies: ["VeilCore", "VeilAttestation", "VeilManifest"], swiftSettings: strict),
        // Connection caps shared by every server (coordinator listeners, injector, mesh proxy).
        .target(
            name: "VeilConnections",
            dependencies: [.product(name: "NIOCore", package: "swift-nio"), .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(
            name: "VeilCoordinator",
            dependencies: [
                "VeilAPI",
                "VeilCore",
                "VeilImageFormat",
                "VeilJOSE",
                "VeilConnections",
                "CVeilSys",
                "VeilAttestation",
                "VeilManifest",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        // The coordinator's client side: attestation, pinned roots, history marks, the TLS client.
        .target(
            name: "VeilClient",
            dependencies: [
                "VeilAPI",
                "VeilCore",
                "VeilAttestation",
                "VeilJOSE",
                "VeilManifest",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "VeilLauncher",
            dependencies: [
                "VeilAPI",
                "VeilCore",
                "VeilImageFormat",
                "CVeilSys",
                "VeilAttestation",
                "VeilClient",
                "VeilManifest",
                "VeilMesh",
                "VeilWorkloadAPI",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "VeilCollateral",
            dependencies: [
                "VeilCore",
                "VeilAttestation",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CISAL", providers: [.apt(["libisal-dev"])]),
        .target(name: "CVeilSys"),
        .target(
            name: "VeilImage",
            dependencies: ["VeilCore", "VeilAttestation", "VeilImageFormat", "VeilJOSE", "CZlib", "CISAL", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        // What a converted image holds that the launcher (and the coordinator, for protected
        // files) read: apart from the converter, so neither links tar, zlib or ISA-L.
        .target(
            name: "VeilImageFormat",
            dependencies: [
                "VeilCore", "VeilJOSE", .product(name: "Crypto", package: "swift-crypto"), .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "VeilMesh",
            dependencies: [
                "VeilCore",
                "VeilConnections",
                "CVeilSys",
                "VeilManifest",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The SPIFFE Workload API (gRPC on a Unix socket) the resident agent serves: its own small
        // gRPC server over NIOHTTP2 (docs/decisions.md: grpc-swift's transport brings Foundation
        // into veil-launcher); the messages in Generated/ come from Protos/workload.proto.
        .target(
            name: "VeilWorkloadAPI",
            dependencies: [
                "VeilCore",
                "VeilJOSE",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "VeilRuntime",
            dependencies: ["CVeilSys", "VeilCore", "VeilAttestation", "VeilClient", "VeilImage", "VeilImageFormat", "VeilJOSE"],
            swiftSettings: strict
        ),
        .target(
            name: "VeilLauncherCommands",
            dependencies: [
                "VeilCore",
                "VeilAttestation", "VeilClient", "VeilLauncher", "VeilImageFormat", "VeilManifest", "VeilMesh",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "VeilFuzzTargets",
            dependencies: [
                "VeilAPI",
                "VeilCore",
                "VeilImageFormat", "VeilAttestation", "VeilCoordinator", "VeilManifest", "VeilImage", "VeilJOSE", "VeilWorkloadAPI",
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strict
        ),
        // docs/fuzzing.md: built normally it lists targets, writes seeds and replays inputs;
        // built with -sanitize=fuzzer,address -D VEIL_FUZZ it is the libFuzzer binary.
        .executableTarget(name: "veil-fuzz", dependencies: ["VeilFuzzTargets"], swiftSettings: strict),
        .target(
            name: "VeilKubernetes",
            dependencies: [
                "VeilCore",
                "VeilConnections",
                .product(name: "NIOCore", package: "swift-nio"),
                "VeilAttestation",
                "VeilManifest",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "veil-launcher",
            dependencies: ["VeilCore", "VeilAttestation", "VeilLauncher", "VeilLauncherCommands", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict,
            // The Swift runtime and FoundationEssentials linked in: every start skips loading and
            // relocating ~30 MB of shared libraries, and images carry (and measure) fewer bytes.
            linkerSettings: [.unsafeFlags(["-static-stdlib", "-Xlinker", "-l_FoundationCollections", "-Xlinker", "-l_FoundationCShims", "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs", "-Xlinker", "--no-export-dynamic"])]
        ),
        .target(
            name: "VeilHostTools",
            dependencies: ["VeilCore", "VeilImage"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "veil-bench",
            dependencies: [
                "VeilAPI",
                "VeilCore",
                "VeilImageFormat", .product(name: "SwiftASN1", package: "swift-asn1"), .product(name: "X509", package: "swift-certificates"),
                "VeilAttestation", "VeilManifest", "VeilCoordinator", "VeilClient", "VeilLauncher", "VeilImage", "VeilRuntime",
                "VeilMesh", "VeilLauncherCommands", "VeilHostTools", "CVeilSys", "VeilJOSE", "VeilWorkloadAPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "veil",
            dependencies: [
                "VeilAPI",
                "VeilCore",
                "VeilImageFormat", .product(name: "NIOCore", package: "swift-nio"), .product(name: "X509", package: "swift-certificates"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                "VeilAttestation",
                "VeilManifest",
                "VeilCoordinator",
                "VeilClient",
                "VeilLauncher",
                "VeilCollateral",
                "VeilConnections",
                "VeilImage",
                "VeilJOSE",
                "VeilRuntime",
                "VeilKubernetes",
                "VeilMesh",
                "VeilLauncherCommands",
                "VeilHostTools",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict,
            linkerSettings: [.unsafeFlags(["-static-stdlib", "-Xlinker", "-lCoreFoundation", "-Xlinker", "-l_FoundationICU", "-Xlinker", "-l_FoundationCollections", "-Xlinker", "-l_FoundationCShims", "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs", "-Xlinker", "--no-export-dynamic"])]
        ),
        .testTarget(
            name: "VeilAttestationTests",
            dependencies: [
                "VeilCore",
                "VeilAttestation",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "VeilJOSETests",
            dependencies: ["VeilCore", "VeilJOSE", .product(name: "Crypto", package: "swift-crypto"), .product(name: "_CryptoExtras", package: "swift-crypto")],
            swiftSettings: strict),
        .testTarget(name: "VeilManifestTests", dependencies: ["VeilCore", "VeilAttestation", "VeilManifest"], swiftSettings: strict),
        .testTarget(name: "VeilFuzzTests", dependencies: ["VeilImageFormat", "VeilFuzzTargets", "VeilImage", "VeilManifest"], swiftSettings: strict),
        .testTarget(
            name: "VeilCoordinatorTests",
            dependencies: [
                "VeilAPI",
                "VeilCore",
                "VeilImageFormat", .product(name: "Crypto", package: "swift-crypto"),
                "VeilCoordinator", "VeilClient", "VeilLauncher", "VeilManifest", "VeilAttestation", "VeilImage", "VeilJOSE",
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "VeilCollateralTests",
            dependencies: [
                "VeilCore",
                "VeilCollateral", "VeilAttestation",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "VeilImageTests", dependencies: ["VeilCore", "VeilImageFormat", "VeilImage", "VeilJOSE", "VeilRuntime", .product(name: "Crypto", package: "swift-crypto")], swiftSettings: strict),
        .testTarget(
            name: "VeilMeshTests",
            dependencies: [
                "VeilCore",
                "VeilMesh", "VeilCoordinator", "VeilManifest", "VeilConnections",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "VeilKubernetesTests", dependencies: ["VeilCore", "VeilKubernetes"], swiftSettings: strict),
        .testTarget(
            name: "VeilWorkloadAPITests",
            dependencies: ["VeilCore", "VeilJOSE", "VeilWorkloadAPI", .product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "VeilLauncherCommandsTests",
            dependencies: ["VeilLauncherCommands", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict),
        .testTarget(name: "VeilEndToEndTests", dependencies: ["CVeilSys", "VeilAPI", "VeilCore", .product(name: "Crypto", package: "swift-crypto"), "VeilAttestation"], swiftSettings: strict),
    ]
)
