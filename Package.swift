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
        .package(url: "https://github.com/apple/swift-nio", from: "2.65.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    ],
    targets: [
        // Pure model and rules; no I/O.
        .target(
            name: "MeridianCore",
            dependencies: ["CMeridianBPF", .product(name: "Yams", package: "Yams")],
            swiftSettings: strict
        ),
        .target(name: "MeridianDNS", swiftSettings: strict),
        // Processes of this host: the supervisor of child processes (start, log, restart with
        // backoff, stop with SIGTERM then SIGKILL, reap), detached daemons, and host commands.
        .target(
            name: "MeridianHost",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
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
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),
        // Prometheus exposition over HTTP for the daemons: the process-wide registry behind
        // swift-metrics and the `/metrics` listener that renders it at scrape time.
        .target(
            name: "MeridianMetrics",
            dependencies: [
                "MeridianHost",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
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
                "MeridianCore", "MeridianStore", "MeridianEtcd", "MeridianEtcdAPI", "MeridianPKI", "MeridianHost", "MeridianFlows",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strict
        ),
        // Flows: the model `meridian observe` prints, a node's flow buffer, and the observer
        // service (gRPC with JSON messages over mutual TLS) that nodes and the relay serve.
        .target(
            name: "MeridianFlows",
            dependencies: [
                "MeridianCore", "MeridianPKI",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // `meridian ui`: the service map and flow table page, its assets compiled in, and the
        // small HTTP server that serves it with the map and flows as JSON.
        .target(
            name: "MeridianUI",
            dependencies: [
                "MeridianFlows",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // libbpf from Debian's libbpf-dev, with wrappers for its option-struct macros.
        .systemLibrary(
            name: "CLibBPF",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev", "libelf-dev", "zlib1g-dev"])]
        ),
        // The map layouts of bpf/include/meridian/abi.h, shared by the BPF programs and Swift.
        .target(
            name: "CMeridianBPF",
            path: "bpf",
            sources: ["abi.c"],
            publicHeadersPath: "include"
        ),
        .plugin(name: "BPFObjectsPlugin", capability: .buildTool()),
        // The Swift side of the eBPF datapath: loading, pinning, typed maps, tc attach, events.
        .target(
            name: "MeridianDatapath",
            dependencies: [
                "MeridianCore", "MeridianHost", "CLibBPF", "CMeridianBPF",
            ],
            swiftSettings: strict,
            plugins: ["BPFObjectsPlugin"]
        ),
        // The node agent: node registration, pods and their CNI endpoints, identities, the
        // reconcilers from the store to the datapath maps, and DNS for service names.
        .target(
            name: "MeridianAgent",
            dependencies: [
                "MeridianCore", "MeridianStore", "MeridianEtcd", "MeridianDatapath", "MeridianDNS", "MeridianHost", "MeridianFlows", "MeridianPKI", "CMeridianBPF",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // What unit tests (and the policy lookup benchmark) stand in for the real parts with: an
        // in-memory key-value store with etcd's semantics, crafted frames and a scratch datapath.
        .target(
            name: "MeridianTestSupport",
            dependencies: [
                "MeridianCore", "MeridianEtcd", "MeridianStore", "MeridianDatapath", "MeridianHost", "CMeridianBPF",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The built-in workloads of demos, tests and benchmarks: the echo server and the probes.
        .target(
            name: "MeridianTools",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // What the administrator's commands do, as a library: contexts, clustermesh enable,
        // connect, disconnect and status, apply, listings, policy trace and service list.
        .target(
            name: "MeridianAdmin",
            dependencies: [
                "MeridianCore", "MeridianStore", "MeridianEtcd", "MeridianPKI", "MeridianControlPlane",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "MeridianLab",
            dependencies: [
                "MeridianCore", "MeridianControlPlane", "MeridianPKI", "MeridianStore", "MeridianEtcd", "MeridianHost", "MeridianAdmin",
                "MeridianAgent",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // The benchmarks behind `meridian bench`: each brings up a lab of its own and drives it
        // through the commands and library calls a user would, against baselines of the same run.
        .target(
            name: "MeridianBench",
            dependencies: [
                "MeridianCore", "MeridianStore", "MeridianEtcd", "MeridianPKI", "MeridianControlPlane", "MeridianDatapath",
                "MeridianHost", "MeridianLab", "MeridianAdmin", "MeridianAgent", "MeridianTestSupport", "CMeridianBPF",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "MeridianCLI",
            dependencies: [
                "MeridianCore", "MeridianStore", "MeridianEtcd", "MeridianPKI",
                "MeridianControlPlane", "MeridianLab", "MeridianAgent", "MeridianDatapath", "MeridianHost", "MeridianTools", "MeridianAdmin", "MeridianBench", "MeridianMetrics",
                "MeridianFlows", "MeridianUI",
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
        .testTarget(name: "MeridianDNSTests", dependencies: ["MeridianDNS"], swiftSettings: strict),
        .testTarget(
            name: "MeridianUITests",
            dependencies: [
                "MeridianUI", "MeridianFlows", .product(name: "Logging", package: "swift-log"), .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MeridianFlowsTests",
            dependencies: [
                "MeridianFlows", "MeridianPKI", .product(name: "GRPCCore", package: "grpc-swift-2"), .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MeridianMetricsTests",
            dependencies: ["MeridianMetrics", .product(name: "Prometheus", package: "swift-prometheus"), .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MeridianControlPlaneTests",
            dependencies: [
                "MeridianControlPlane", "MeridianStore", "MeridianEtcd", "MeridianCore", "MeridianTestSupport", "MeridianHost",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MeridianStoreTests",
            dependencies: [
                "MeridianStore", "MeridianEtcd", "MeridianEtcdAPI", "MeridianCore", "MeridianHost", "MeridianTestSupport",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MeridianHostTests",
            dependencies: ["MeridianHost", .product(name: "Logging", package: "swift-log"), .product(name: "Subprocess", package: "swift-subprocess")],
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
        // Also gets the harness programs of bpf/tests, which give crafted frames tunnel metadata.
        .testTarget(
            name: "MeridianDatapathTests",
            dependencies: ["MeridianDatapath", "MeridianCore", "MeridianTestSupport", "CMeridianBPF", "CLibBPF"],
            swiftSettings: strict,
            plugins: ["BPFObjectsPlugin"]
        ),
        .testTarget(
            name: "MeridianAgentTests",
            dependencies: ["MeridianAgent", "MeridianCore", "MeridianDatapath", "MeridianTestSupport", "MeridianStore", "MeridianEtcd", "CMeridianBPF", "MeridianFlows",
                           "MeridianDNS", .product(name: "Logging", package: "swift-log"), .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MeridianAdminTests",
            dependencies: ["MeridianAdmin", "MeridianStore", "MeridianCore", "MeridianTestSupport", "MeridianEtcd"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MeridianBenchTests",
            dependencies: [
                "MeridianBench", "MeridianCLI", "MeridianTools", "MeridianStore", "MeridianCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MeridianIntegrationTests",
            dependencies: [
                "MeridianCore", "MeridianStore", "MeridianEtcd", "MeridianPKI", "MeridianHost",
                "MeridianControlPlane", "MeridianLab", "MeridianDatapath", "MeridianTestSupport", "MeridianAdmin", "MeridianTools", "CMeridianBPF",
            ],
            swiftSettings: strict
        ),
    ]
)
