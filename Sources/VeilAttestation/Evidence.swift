import FoundationEssentials
import VeilCore

/// Evidence as it travels between Veil components: a format name and the format's bytes.
///
/// Known formats: ``SimulatedReport/format``. Hardware formats (SGX/TDX quotes, SNP reports)
/// plug in under their own names.
public struct Evidence: Codable, Sendable, Equatable {
    public var format: String
    public var data: [UInt8]

    public init(format: String, data: [UInt8]) {
        self.format = format
        self.data = data
    }

    private enum CodingKeys: String, CodingKey { case format, data }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.decode(String.self, forKey: .format)
        data = try container.decode(Base64Bytes.self, forKey: .data).bytes
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(format, forKey: .format)
        try container.encode(Base64Bytes(data), forKey: .data)
    }
}

/// Something that can produce evidence binding 64 bytes of report data.
public protocol EvidenceProvider: Sendable {
    /// `true` when the evidence gives no confidentiality (simulation).
    var isSimulated: Bool { get }
    /// `true` when the evidence measures a whole VM (SNP, TDX), not the launched program: a
    /// launcher then binds the container image's measurement into the report data.
    var isConfidentialVM: Bool { get }
    func evidence(reportData: [UInt8]) throws -> Evidence
}

extension EvidenceProvider {
    public var isConfidentialVM: Bool { false }
}
