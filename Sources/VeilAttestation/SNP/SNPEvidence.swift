import FoundationEssentials
import SwiftASN1
import VeilCore

/// Evidence format `amd-snp-report`: a JSON object `{"report": BASE64, "vcek": BASE64 DER,
/// "chain": PEM (ASK then ARK, optional)}`; built from configfs-tsm's outblob and auxblob.
public enum SNPEvidence {
    public static let format = "amd-snp-report"

    /// Certificate table GUIDs (GHCB specification, "SNP Extended Guest Request"), stored in
    /// RFC 4122 byte order: the table's bytes read as the text form, as go-sev-guest, virtee
    /// and the Linux kernel store them.
    static let vcekGUID = "63da758d-e664-4564-adc5-f4b93be8accd"
    static let vlekGUID = "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
    static let arkGUID = "c0b406a4-a803-4952-9743-3fb6014cd0ae"
    static let askGUID = "4ab7b379-bbac-4fe4-a02f-05aef327c782"

    struct Body: Codable {
        var report: String
        /// Absent when the host supplied no certificates (upstream KVM's default): the
        /// coordinator then fetches the VCEK from AMD KDS (``withEndorsement``) before verifying.
        var vcek: String?
        var chain: String?
    }

    /// Builds evidence from a report and the SEV certificate table (GUID ‖ u32 offset ‖ u32
    /// length entries, all-zero terminator; offsets from the table start). Entries may hold
    /// DER or PEM certificates (hosts deliver both). An empty table, or one without a VCEK or
    /// VLEK, gives evidence without an endorsement key.
    public static func make(report: [UInt8], certificateTable table: [UInt8]) throws -> Evidence {
        let certificates = table.isEmpty ? [:] : try parseCertificateTable(table)
        var vcek: [UInt8]?
        if let endorsement = certificates[vcekGUID] ?? certificates[vlekGUID] {
            vcek = try der(endorsement, entry: certificates[vcekGUID] != nil ? "VCEK" : "VLEK")
        }
        var chain: String?
        if vcek != nil, let ask = certificates[askGUID], let ark = certificates[arkGUID] {
            chain = pem(try der(ask, entry: "ASK")) + pem(try der(ark, entry: "ARK"))
        }
        return encode(Body(report: Data(report).base64EncodedString(), vcek: vcek.map { Data($0).base64EncodedString() }, chain: chain))
    }

    /// Evidence from a report and, when the attester had them, its VCEK or VLEK (DER) and the
    /// ASK and ARK (DER).
    public static func make(report: [UInt8], endorsementKey: [UInt8]?, ask: [UInt8]? = nil, ark: [UInt8]? = nil) -> Evidence {
        var chain: String?
        if endorsementKey != nil, let ask, let ark { chain = pem(ask) + pem(ark) }
        return encode(Body(report: Data(report).base64EncodedString(), vcek: endorsementKey.map { Data($0).base64EncodedString() }, chain: chain))
    }

    /// The VCEK or VLEK (DER) SNP evidence carries, if any.
    public static func endorsementKey(in evidence: Evidence) -> [UInt8]? {
        guard evidence.format == format, let body = try? JSONDecoder().decode(Body.self, from: Data(evidence.data)) else { return nil }
        return body.vcek.flatMap { Data(base64Encoded: $0) }.map(Array.init)
    }

    /// The report of SNP evidence that carries a VCEK but no ASK/ARK chain (parsed, not
    /// verified), or nil: such evidence needs the product's chain (KDS `cert_chain`) to verify.
    public static func reportNeedingChain(_ evidence: Evidence) -> SNPReport? {
        guard evidence.format == format, let body = try? JSONDecoder().decode(Body.self, from: Data(evidence.data)), body.vcek != nil,
            body.chain == nil, let report = Data(base64Encoded: body.report)
        else { return nil }
        return try? SNPReport(Array(report))
    }

    static func encode(_ body: Body) -> Evidence {
        // Three optional strings: encoding cannot fail.
        Evidence(format: format, data: Array((try? JSONEncoder().encode(body)) ?? Data()))
    }

    /// The report of SNP evidence that carries no VCEK/VLEK (parsed, not verified), or nil when
    /// the evidence is not SNP or already carries one.
    public static func reportNeedingEndorsement(_ evidence: Evidence) -> SNPReport? {
        guard evidence.format == format, let body = try? JSONDecoder().decode(Body.self, from: Data(evidence.data)), body.vcek == nil,
            let report = Data(base64Encoded: body.report)
        else { return nil }
        return try? SNPReport(Array(report))
    }

    /// `evidence` with a VCEK (DER) and its ASK/ARK chain (PEM) added. What is added needs no
    /// trust: verification checks the chain against the compiled-in ARK and the VCEK against
    /// the report's chip ID and TCB.
    public static func withEndorsement(_ evidence: Evidence, vcek: [UInt8], chain: String) throws -> Evidence {
        guard evidence.format == format, var body = try? JSONDecoder().decode(Body.self, from: Data(evidence.data)) else {
            throw ProviderError.malformed("not SNP evidence")
        }
        body.vcek = Data(vcek).base64EncodedString()
        body.chain = chain
        return encode(body)
    }

    /// The DER of a certificate table entry holding DER or one PEM certificate.
    static func der(_ payload: [UInt8], entry: String) throws(ProviderError) -> [UInt8] {
        let trimmed = payload.prefix { $0 != 0 }
        guard trimmed.starts(with: Array("-----BEGIN".utf8)) else { return payload }
        guard let documents = try? PEMDocument.parseMultiple(pemString: String(decoding: trimmed, as: UTF8.self)), documents.count == 1 else {
            throw .malformed("SNP certificate table entry \(entry) is neither DER nor one PEM certificate")
        }
        return documents[0].derBytes
    }

    package static func parseCertificateTable(_ table: [UInt8]) throws(ProviderError) -> [String: [UInt8]] {
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

    /// RFC 4122 text form of 16 GUID bytes in RFC 4122 (big-endian) order.
    static func guid(_ b: [UInt8]) -> String {
        "\(Hex.encode(b[0..<4]))-\(Hex.encode(b[4..<6]))-\(Hex.encode(b[6..<8]))-\(Hex.encode(b[8..<10]))-\(Hex.encode(b[10..<16]))"
    }

    static func pem(_ der: [UInt8]) -> String {
        let base64 = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return "-----BEGIN CERTIFICATE-----\n\(base64)\n-----END CERTIFICATE-----\n"
    }

    /// The product a VCEK/VLEK certificate (DER) names, or nil.
    public static func product(ofCertificate der: [UInt8]) -> AMDProduct? {
        (try? AMDCertificate(derEncoded: der))?.stringExtension("\(SNPVerifier.vcekOID).2").flatMap(AMDProduct.init(productName:))
    }

    /// The product whose ARK issued a CRL (DER): its issuer is `CN=ARK-<product>`.
    public static func product(ofCRL der: [UInt8]) -> AMDProduct? {
        guard let crl = try? RevocationList(derEncoded: der) else { return nil }
        return AMDProduct.allCases.first { product in
            crl.issuer.contains { $0.contains { $0.type == .RDNAttributeType.commonName && "\($0.value)" == "ARK-\(product.rawValue)" } }
        }
    }

    /// The attestation report inside SNP evidence, parsed but **not verified** (a replica
    /// reading its own report; anything else goes through ``verify``).
    public static func unverifiedReport(in evidence: Evidence) throws -> SNPReport {
        guard evidence.format == format, let body = try? JSONDecoder().decode(Body.self, from: Data(evidence.data)),
            let report = Data(base64Encoded: body.report)
        else { throw ProviderError.malformed("not SNP evidence") }
        return try SNPReport(Array(report))
    }

    /// Verifies SNP evidence. The product comes from the report (version 3+) or the VCEK's
    /// product name, and the two must agree; without a chain in the evidence, AMD's chain for
    /// that product must be supplied by `chains`. `crls` (per product, DER) are checked when given.
    static func verify(_ evidence: Evidence, chains: [AMDProduct: String], crls: [AMDProduct: [UInt8]] = [:], at time: Date = Date()) throws(SNPError) -> Claims {
        guard let body = try? JSONDecoder().decode(Body.self, from: Data(evidence.data)), let report = Data(base64Encoded: body.report) else {
            throw .malformedCertificate("SNP evidence is not {report, vcek, chain} JSON")
        }
        guard let encodedVCEK = body.vcek else { throw .endorsementMissing }
        guard let vcek = Data(base64Encoded: encodedVCEK) else { throw .malformedCertificate("the evidence's vcek is not base64") }
        let certificate = try AMDCertificate(derEncoded: Array(vcek))
        let name = certificate.stringExtension("\(SNPVerifier.vcekOID).2")
        let parsed: SNPReport
        do {
            parsed = try SNPReport(Array(report))
        } catch {
            throw .malformedReport(error)
        }
        guard let product = parsed.product ?? name.flatMap(AMDProduct.init(productName:)) else {
            throw .productUnknown("neither the report (version \(parsed.version)) nor the certificate names a known product (Milan, Genoa, Turin)")
        }
        guard let chain = body.chain ?? chains[product] else { throw .chainUntrusted("no ASK/ARK chain for \(product.rawValue)") }
        // Debug and migration are flagged in the claims; the manifest package decides.
        let verifier = SNPVerifier(product: product, policy: .wellFormed)
        return try verifier.verify(report: parsed, bytes: Array(report), vcek: try verifier.verifyChain(vcek: Array(vcek), chainPEM: chain, crl: crls[product], at: time), at: time).1
    }
}
