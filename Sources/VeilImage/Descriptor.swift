import VeilCore

/// A `sha256:<hex>` content digest. Invariant: 32 bytes; other algorithms are refused.
public struct BlobDigest: Hashable, Sendable, Codable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(sha256 bytes: [UInt8]) {
        precondition(bytes.count == 32)
        self.bytes = bytes
    }

    public init(parsing text: String) throws {
        guard text.hasPrefix("sha256:"), let bytes = Hex.decode(String(text.dropFirst(7))), bytes.count == 32,
            text.dropFirst(7).allSatisfy({ $0.isHexDigit && !$0.isUppercase })
        else { throw ImageError.badDigest(text) }
        self.bytes = bytes
    }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { "sha256:\(hex)" }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(parsing: text)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\(error)"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// An OCI content descriptor.
public struct Descriptor: Codable, Sendable, Equatable {
    public var mediaType: String
    public var digest: BlobDigest
    public var size: UInt64
    public var annotations: [String: String]?
    public var platform: Platform?

    public struct Platform: Codable, Sendable, Equatable {
        public var architecture: String
        public var os: String
        public var variant: String?
    }

    public init(mediaType: String, digest: BlobDigest, size: UInt64, annotations: [String: String]? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.annotations = annotations
    }

    public static let refNameAnnotation = "org.opencontainers.image.ref.name"
    public var refName: String? { annotations?[Self.refNameAnnotation] }
}

/// Media types Veil reads (OCI and Docker schema 2) and writes (OCI only).
public enum MediaType {
    public static let index = "application/vnd.oci.image.index.v1+json"
    public static let manifest = "application/vnd.oci.image.manifest.v1+json"
    public static let config = "application/vnd.oci.image.config.v1+json"
    public static let layer = "application/vnd.oci.image.layer.v1.tar"
    public static let layerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
    static let dockerList = "application/vnd.docker.distribution.manifest.list.v2+json"
    static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    static let dockerConfig = "application/vnd.docker.container.image.v1+json"
    static let dockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    static let dockerLayer = "application/vnd.docker.image.rootfs.diff.tar"

    static func isIndex(_ type: String) -> Bool { type == index || type == dockerList }
    static func isManifest(_ type: String) -> Bool { type == manifest || type == dockerManifest }

    /// The OCI layer type for a layer type Veil reads, and whether it is gzip-compressed.
    static func layerKind(_ type: String) throws -> (oci: String, gzip: Bool) {
        switch type {
        case layerGzip, dockerLayerGzip: return (layerGzip, true)
        case layer, dockerLayer: return (layer, false)
        default: throw ImageError.unsupportedMediaType("\(type) (layer; zstd and foreign layers are not supported)")
        }
    }
}

/// `index.json` / an image index.
package struct ImageIndex: Codable {
    var schemaVersion: Int
    var mediaType: String?
    var manifests: [Descriptor]
    var annotations: [String: String]?
}

/// An image manifest.
package struct ImageManifest: Codable {
    var schemaVersion: Int
    var mediaType: String?
    var config: Descriptor
    var layers: [Descriptor]
    var annotations: [String: String]?
}
