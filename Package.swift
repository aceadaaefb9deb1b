// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "connlog",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "ConnLog", targets: ["ConnLog"]),
        .executable(name: "connlog", targets: ["connlog"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
    ],
    targets: [
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        // The kernel's netlink and sock_diag structures (linux/*.h), for the netlink source.
        .systemLibrary(name: "CNetlink"),
        // Compiles Migrations/*.sql into the library, so the binary needs no files at run time.
        .executableTarget(name: "connlog-embed-migrations"),
        .plugin(
            name: "EmbedMigrations",
            capability: .buildTool(),
            dependencies: ["connlog-embed-migrations"]
        ),
        .target(
            name: "ConnLog",
            dependencies: ["CSQLite", "CNetlink"],
            plugins: ["EmbedMigrations"]
        ),
        .executableTarget(
            name: "connlog",
            dependencies: [
                "ConnLog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The in-process half of scripts/bench (steady samples, parsing, bursts, generated history, questions).
        .executableTarget(
            name: "connlog-bench",
            dependencies: ["ConnLog"]
        ),
        .testTarget(
            name: "ConnLogTests",
            dependencies: ["ConnLog"],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["ConnLog", "connlog"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
