import Foundation

/// Evidence format `amd-snp-report`: a JSON object `{"report": BASE64, "vcek": BASE64 DER,
/// "chain": PEM (ASK then ARK, optional)}`; built from configfs-tsm's outblob and auxblob.
public enum SNPEvidence {
    public static let format = "amd-snp-report"

    static let vcekGUID = "63da758d-e664-4564-adc5-f4b93be8accd"
    static let vlekGUID = "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
    static let askGUID = "c0b406a4-a803-4952-9743-3fb6014cd0ae"
    static let arkGUID = "4ab7b379-bbac-4fe4-a02f-05aef327c782"

    struct Body: Codable {
        var report: String
        var vcek: String
        var chain: String?
    }

    /// Builds evidence from a report and the SEV certificate table (GUID ‖ u32 offset ‖ u32
    /// length entries, all-zero terminator; offsets from the table start).
    public static func make(report: [UInt8], certificateTable table: [UInt8]) throws -> Evidence {
        let certificates = try parseCertificateTable(table)
        guard let vcek = certificates[vcekGUID] ?? certificates[vlekGUID] else {
            throw ProviderError.malformed("SNP certificate table has no VCEK or VLEK (is the host configured to provide certificates?)")
        }
        var chain: String?
        if let ask = certificates[askGUID], let ark = certificates[arkGUID] {
            chain = pem(ask) + pem(ark)
        }
        let body = Body(report: Data(report).base64EncodedString(), vcek: Data(vcek).base64EncodedString(), chain: chain)
        return Evidence(format: format, data: Array(try JSONEncoder().encode(body)))
    }

    static func parseCertificateTable(_ table: [UInt8]) throws(ProviderError) -> [String: [UInt8]] {
        var entries: [String: [UInt8]] = [:]
        var offset = 0
        while true {
            guard offset + 24 <= table.count else { throw .malformed("SNP certificate table is truncated") }
            let guidBytes = Array(table[offset..<offset + 16])
            let start = Int(table[offset + 16..<offset + 20].reversed().reduce(0) { $0 << 8 | UInt32($1) })
            let length = Int(table[offset + 20..<offset + 24].reversed().reduce(0) { $0 << 8 | UInt32($1) })
            if guidBytes.allSatisfy({ $0 == 0 }) { break }
            guard start >= 0, length >= 0, start + length <= table.count else { throw .malformed("SNP certificate table entry out of bounds") }
            entries[guid(guidBytes)] = Array(table[start..<start + length])
            offset += 24
        }
        return entries
    }

    /// RFC 4122 text form of a GUID stored little-endian in its first three fields.
    static func guid(_ b: [UInt8]) -> String {
        let d1 = Hex.encode(b[0..<4].reversed()), d2 = Hex.encode(b[4..<6].reversed()), d3 = Hex.encode(b[6..<8].reversed())
        return "\(d1)-\(d2)-\(d3)-\(Hex.encode(b[8..<10]))-\(Hex.encode(b[10..<16]))"
    }

    static func guidBytes(_ text: String) -> [UInt8] {
        let hex = Hex.decode(text.replacingOccurrences(of: "-", with: "")) ?? []
        return Array(hex[0..<4].reversed()) + Array(hex[4..<6].reversed()) + Array(hex[6..<8].reversed()) + Array(hex[8...])
    }

    static func pem(_ der: [UInt8]) -> String {
        let base64 = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return "-----BEGIN CERTIFICATE-----\n\(base64)\n-----END CERTIFICATE-----\n"
    }

    /// Verifies SNP evidence. The product comes from the VCEK; without a chain in the evidence,
    /// AMD's chain for that product must be supplied by `chains`.
    static func verify(_ evidence: Evidence, chains: [AMDProduct: String]) throws(SNPError) -> Claims {
        guard let body = try? JSONDecoder().decode(Body.self, from: Data(evidence.data)),
            let report = Data(base64Encoded: body.report), let vcek = Data(base64Encoded: body.vcek)
        else { throw .malformedCertificate("SNP evidence is not {report, vcek, chain} JSON") }
        let certificate = try AMDCertificate(derEncoded: Array(vcek))
        let name = certificate.stringExtension("\(SNPVerifier.vcekOID).2") ?? ""
        guard let product = AMDProduct.allCases.first(where: { name.hasPrefix($0.rawValue) }) else {
            throw .productMismatch(vcek: name, expected: "Milan, Genoa or Turin")
        }
        guard let chain = body.chain ?? chains[product] else { throw .chainUntrusted("no ASK/ARK chain for \(product.rawValue)") }
        // Debug is flagged in the claims; the manifest package decides.
        return try SNPVerifier(product: product, policy: .init(allowDebug: true, allowMigrationAgent: true))
            .verify(report: Array(report), vcek: Array(vcek), chainPEM: chain).1
    }
}
