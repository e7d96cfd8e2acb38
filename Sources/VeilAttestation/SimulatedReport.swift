import Crypto
import FoundationEssentials
import VeilCore

/// Veil's simulated evidence: a JSON report signed by a ``SimulationPlatformKey``.
///
/// Wire layout of ``Evidence/data`` for format `veil-simulated-v1` (a JSON object):
///
/// | field | type | meaning |
/// | --- | --- | --- |
/// | `report` | base64 | the UTF-8 JSON of ``SimulatedReport/Body`` exactly as signed |
/// | `signature` | base64 | ECDSA P-256 / SHA-256 signature (DER) over the `report` bytes |
///
/// The body carries the claims (`measurement`, `signer`, `productID`, `securityVersion`,
/// `reportData`, `debug`), `simulated: true` (always) and `platformKey`, the fingerprint of the
/// signing key (informational: the verifier checks against the key it trusts, never against
/// this field).
public enum SimulatedReport {
    public static let format = "veil-simulated-v1"

    public struct Body: Codable, Sendable, Equatable {
        public var version: Int
        public var measurement: String
        public var signer: String
        public var productID: UInt16
        public var securityVersion: UInt16
        public var reportData: String
        public var debug: Bool
        public var simulated: Bool
        public var platformKey: String
    }

    private struct Envelope: Codable {
        var report: String
        var signature: String
    }

    /// Signs `claims` with `key`. `claims.reportData` must be 64 bytes.
    public static func sign(_ claims: Claims, with key: SimulationPlatformKey) throws -> Evidence {
        precondition(claims.reportData.count == ReportData.size, "report data must be \(ReportData.size) bytes")
        let body = Body(
            version: 1, measurement: Hex.encode(claims.measurement), signer: Hex.encode(claims.signer),
            productID: claims.productID, securityVersion: claims.securityVersion,
            reportData: Hex.encode(claims.reportData), debug: claims.debug, simulated: true,
            platformKey: key.fingerprint)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let report = try encoder.encode(body)
        let signature = try key.privateKey.signature(for: report)
        let envelope = Envelope(
            report: report.base64EncodedString(), signature: signature.derRepresentation.base64EncodedString())
        return Evidence(format: format, data: Array(try encoder.encode(envelope)))
    }

    /// Verifies `evidence` against the trusted platform key and returns its claims.
    public static func verify(_ evidence: Evidence, trustedKey: P256.Signing.PublicKey) throws -> Claims {
        guard evidence.format == format else { throw AttestationError.unsupportedFormat(evidence.format) }
        let decoder = JSONDecoder()
        guard let envelope = try? decoder.decode(Envelope.self, from: Data(evidence.data)) else {
            throw AttestationError.malformedEvidence("simulated evidence is not a {report, signature} JSON object")
        }
        guard let report = Data(base64Encoded: envelope.report), let signatureDER = Data(base64Encoded: envelope.signature)
        else { throw AttestationError.malformedEvidence("report or signature is not base64") }
        guard let body = try? decoder.decode(Body.self, from: report) else {
            throw AttestationError.malformedEvidence("simulated report body is not valid JSON of the documented shape")
        }
        let trusted = SimulationPlatformKey.fingerprint(of: trustedKey)
        guard let signature = try? P256.Signing.ECDSASignature(derRepresentation: signatureDER) else {
            throw AttestationError.malformedEvidence("signature is not a DER ECDSA signature")
        }
        guard trustedKey.isValidSignature(signature, for: report) else {
            // Name the key that signed it when that is why it failed: the usual operator mistake.
            if body.platformKey != trusted {
                throw AttestationError.untrustedPlatformKey(presented: body.platformKey, trusted: trusted)
            }
            throw AttestationError.signatureInvalid
        }
        guard body.version == 1 else { throw AttestationError.malformedEvidence("unknown simulated report version \(body.version)") }
        guard body.simulated else { throw AttestationError.malformedEvidence("simulated report without simulated: true") }
        guard let measurement = Hex.decode(body.measurement), measurement.count == SHA256.byteCount else {
            throw AttestationError.malformedEvidence("measurement must be 32 bytes of hex")
        }
        guard let signer = Hex.decode(body.signer) else { throw AttestationError.malformedEvidence("signer is not hex") }
        guard let reportData = Hex.decode(body.reportData), reportData.count == ReportData.size else {
            throw AttestationError.malformedEvidence("reportData must be \(ReportData.size) bytes of hex")
        }
        return Claims(
            tee: .simulated, measurement: measurement, signer: signer, productID: body.productID,
            securityVersion: body.securityVersion, reportData: reportData, debug: body.debug, simulated: true)
    }
}

/// Produces simulated evidence for a fixed identity.
public struct SimulatedEvidenceProvider: EvidenceProvider {
    public let key: SimulationPlatformKey
    public let measurement: [UInt8]
    public let signer: [UInt8]
    public let productID: UInt16
    public let securityVersion: UInt16

    public var isSimulated: Bool { true }

    public init(key: SimulationPlatformKey, measurement: [UInt8], signer: [UInt8] = [], productID: UInt16 = 0, securityVersion: UInt16 = 0) {
        self.key = key
        self.measurement = measurement
        self.signer = signer
        self.productID = productID
        self.securityVersion = securityVersion
    }

    public func evidence(reportData: [UInt8]) throws -> Evidence {
        try SimulatedReport.sign(
            Claims(
                tee: .simulated, measurement: measurement, signer: signer, productID: productID,
                securityVersion: securityVersion, reportData: reportData, simulated: true),
            with: key)
    }
}
