// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "meridian",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "meridian", targets: ["meridian"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.0.0"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.0.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.28.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.0.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    ],
    targets: [
        // Pure model and rules; no I/O.
        .target(
            name: "MeridianCore",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: strict
        ),
        // Generated etcd v3 protobuf + gRPC client code (scripts/generate-protos.sh).
        .target(
            name: "MeridianEtcdAPI",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .target(
            name: "MeridianEtcd",
            dependencies: [
                "MeridianEtcdAPI",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "MeridianPKI",
            dependencies: [
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "MeridianStore",
            dependencies: ["MeridianCore", "MeridianEtcd"],
            swiftSettings: strict
        ),
        .target(
            name: "MeridianControlPlane",
            dependencies: [
                "MeridianCore", "MeridianStore", "MeridianEtcd", "MeridianPKI",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "MeridianLab",
            dependencies: ["MeridianCore", "MeridianControlPlane", "MeridianPKI", "MeridianStore"],
            swiftSettings: strict
        ),
        .target(
            name: "MeridianCLI",
            dependencies: [
                "MeridianCore", "MeridianStore", "MeridianEtcd", "MeridianPKI",
                "MeridianControlPlane", "MeridianLab",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "meridian",
            dependencies: ["MeridianCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MeridianCoreTests",
            dependencies: ["MeridianCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MeridianPKITests",
            dependencies: ["MeridianPKI"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MeridianMeshTests",
            dependencies: ["MeridianControlPlane", "MeridianCLI", "MeridianStore", "MeridianEtcd"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MeridianIntegrationTests",
            dependencies: [
                "MeridianCore", "MeridianStore", "MeridianEtcd", "MeridianPKI",
                "MeridianControlPlane", "MeridianLab",
            ],
            swiftSettings: strict
        ),
    ]
)
