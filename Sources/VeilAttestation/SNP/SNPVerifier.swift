import Crypto
import Foundation

/// Why an SEV-SNP report did not verify. Each case names the failed check.
public enum SNPError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformedReport(QuoteParseError)
    case malformedCertificate(String)
    case untrustedARK(product: String)
    case chainUntrusted(String)
    case certificateExpired(String)
    case unsupportedSignatureAlgorithm(UInt32)
    case unsupportedSigningKey(UInt32)
    case chipIDMismatch
    case signingKeyMismatch(String)
    case productMismatch(vcek: String, expected: String)
    case reportedTCBMismatch(component: String, report: Int, vcek: Int)
    case signatureInvalid
    case debugNotAllowed
    case migrationAgentNotAllowed
    case tcbBelowMinimum(reported: String, minimum: String)

    public var description: String {
        switch self {
        case .malformedReport(let error): return "malformed SNP report: \(error)"
        case .malformedCertificate(let why): return "malformed AMD certificate: \(why)"
        case .untrustedARK(let product): return "the ARK is not AMD's ARK-\(product)"
        case .chainUntrusted(let why): return "AMD certificate chain is not trusted: \(why)"
        case .certificateExpired(let subject): return "AMD certificate '\(subject)' is outside its validity period"
        case .unsupportedSignatureAlgorithm(let algorithm): return "unsupported SNP signature algorithm \(algorithm) (1 = ECDSA P-384/SHA-384)"
        case .unsupportedSigningKey(let key): return "report signed by key type \(key); VCEK (0) and VLEK (1) are supported"
        case .signingKeyMismatch(let why): return "signing key mismatch: \(why)"
        case .chipIDMismatch: return "the VCEK's hwID is not the report's chip ID (VCEK of another chip)"
        case .productMismatch(let vcek, let expected): return "VCEK is for product \(vcek), expected \(expected)"
        case .reportedTCBMismatch(let component, let report, let vcek):
            return "reported TCB \(component) SPL \(report) differs from the VCEK's \(vcek)"
        case .signatureInvalid: return "report signature does not verify with the VCEK"
        case .debugNotAllowed: return "guest policy allows debugging (no confidentiality) and debug is not allowed"
        case .migrationAgentNotAllowed: return "guest policy allows a migration agent and that is not allowed"
        case .tcbBelowMinimum(let reported, let minimum): return "reported TCB (\(reported)) is below the minimum (\(minimum))"
        }
    }
}

/// Verifies AMD SEV-SNP reports signed by a VCEK or VLEK: ARK (compiled in per product) →
/// ASK (or ASVK) → VCEK (or VLEK)
/// with RSASSA-PSS/SHA-384, the VCEK's hwID and TCB extensions against the report, the
/// ECDSA P-384 report signature, then the guest policy.
public struct SNPVerifier: Sendable {
    public struct Policy: Sendable {
        public var allowDebug = false
        public var allowMigrationAgent = false
        public var minimumTCB: SNPReport.TCBVersion?
        public init(allowDebug: Bool = false, allowMigrationAgent: Bool = false, minimumTCB: SNPReport.TCBVersion? = nil) {
            self.allowDebug = allowDebug
            self.allowMigrationAgent = allowMigrationAgent
            self.minimumTCB = minimumTCB
        }
    }

    public let product: AMDProduct
    public let policy: Policy

    /// The ARK to trust: the product's compiled-in AMD ARK, or another root for tests of
    /// PKI that AMD has no public samples of (VLEK).
    /// Parsed once here, not per verification; `nil` when the given PEM is not a certificate.
    let trustedARK: AMDCertificate?

    public init(product: AMDProduct, policy: Policy = Policy()) {
        self.init(product: product, policy: policy, trustedARKPEM: product.arkPEM)
    }

    init(product: AMDProduct, policy: Policy, trustedARKPEM: String) {
        self.product = product
        self.policy = policy
        self.trustedARK = (try? AMDCertificate.parsePEM(trustedARKPEM))?.first
    }

    static let vcekOID = "1.3.6.1.4.1.3704.1"

    /// A VCEK whose chain to the compiled-in ARK was verified; reusable for many reports
    /// of the same chip while `time` stays inside every certificate's validity.
    public struct VerifiedVCEK: Sendable {
        let certificate: AMDCertificate
        public let validUntil: Date
    }

    /// - Parameters:
    ///   - vcek: the VCEK certificate (DER).
    ///   - chainPEM: ASK then ARK (AMD KDS `cert_chain`).
    public func verify(report bytes: [UInt8], vcek vcekDER: [UInt8], chainPEM: String, at time: Date = Date()) throws(SNPError) -> (SNPReport, Claims) {
        let report: SNPReport
        do {
            report = try SNPReport(bytes)
        } catch {
            throw .malformedReport(error)
        }
        return try verify(report: report, bytes: bytes, vcek: try verifyChain(vcek: vcekDER, chainPEM: chainPEM, at: time), at: time)
    }

    /// ARK (must be AMD's for the product) → ASK → VCEK, RSASSA-PSS/SHA-384, validity at `time`.
    public func verifyChain(vcek vcekDER: [UInt8], chainPEM: String, at time: Date) throws(SNPError) -> VerifiedVCEK {
        let chain = try AMDCertificate.parsePEM(chainPEM)
        guard chain.count == 2 else { throw .chainUntrusted("cert_chain must hold the ASK and the ARK, found \(chain.count) certificates") }
        let (ask, ark) = (chain[0], chain[1])
        guard let trustedARK else { throw .malformedCertificate("the trusted ARK is not a PEM certificate") }
        guard ark.der == trustedARK.der else { throw .untrustedARK(product: product.rawValue) }
        guard ark.isSigned(by: ark) else { throw .chainUntrusted("ARK self-signature does not verify") }
        guard ask.issuer == ark.subject, ask.isSigned(by: ark) else { throw .chainUntrusted("ASK is not signed by ARK-\(product.rawValue)") }
        let vcek = try AMDCertificate(derEncoded: vcekDER)
        guard vcek.issuer == ask.subject, vcek.isSigned(by: ask) else { throw .chainUntrusted("VCEK is not signed by the ASK") }
        for certificate in [ark, ask, vcek] where !(certificate.notBefore <= time && time <= certificate.notAfter) {
            throw .certificateExpired("\(certificate.subject)")
        }
        if let name = vcek.stringExtension("\(Self.vcekOID).2"), !name.hasPrefix(product.rawValue) {
            throw .productMismatch(vcek: name, expected: product.rawValue)
        }
        return VerifiedVCEK(certificate: vcek, validUntil: min(ark.notAfter, ask.notAfter, vcek.notAfter))
    }

    /// The report checks, with a VCEK verified before.
    public func verify(report: SNPReport, bytes: [UInt8], vcek verified: VerifiedVCEK, at time: Date = Date()) throws(SNPError) -> (SNPReport, Claims) {
        guard time <= verified.validUntil else { throw .certificateExpired("\(verified.certificate.subject)") }
        let vcek = verified.certificate
        guard report.signatureAlgorithm == 1 else { throw .unsupportedSignatureAlgorithm(report.signatureAlgorithm) }
        let hwID = vcek.extensions["\(Self.vcekOID).4"]
        switch report.signingKey {
        case 0:
            // VCEK: bound to one chip.
            guard let hwID else { throw .signingKeyMismatch("the report says VCEK, the certificate has no hwID (a VLEK?)") }
            if !report.maskChipID, hwID != report.chipID { throw .chipIDMismatch }
        case 1:
            // VLEK: loaded by the cloud provider, not bound to a chip, so it carries no hwID.
            guard hwID == nil else { throw .signingKeyMismatch("the report says VLEK, the certificate has a hwID (a VCEK)") }
        default:
            throw .unsupportedSigningKey(report.signingKey)
        }
        let reported = SNPReport.TCBVersion(raw: report.reportedTCB, turin: product.usesTurinTCBLayout)
        var components: [(String, String, UInt8)] = [
            ("bootloader", "3.1", reported.bootloader), ("TEE", "3.2", reported.tee), ("SNP", "3.3", reported.snp), ("microcode", "3.8", reported.microcode),
        ]
        if let fmc = reported.fmc { components.append(("FMC", "3.9", fmc)) }
        for (name, suffix, value) in components {
            guard let certified = vcek.integerExtension("\(Self.vcekOID).\(suffix)") else {
                throw .malformedCertificate("VCEK lacks the \(name) SPL extension")
            }
            guard certified == Int(value) else { throw .reportedTCBMismatch(component: name, report: Int(value), vcek: certified) }
        }

        guard let key = P384.Signing.PublicKey(vcek.publicKey),
            let signature = try? P384.Signing.ECDSASignature(rawRepresentation: report.signature),
            key.isValidSignature(signature, for: bytes[..<SNPReport.signedLength])
        else { throw .signatureInvalid }

        if report.policy.debugAllowed && !policy.allowDebug { throw .debugNotAllowed }
        if report.policy.migrationAgentAllowed && !policy.allowMigrationAgent { throw .migrationAgentNotAllowed }
        if let minimum = policy.minimumTCB, !reported.isAtLeast(minimum) {
            throw .tcbBelowMinimum(reported: "\(reported)", minimum: "\(minimum)")
        }
        var claims = Claims(
            tee: .snp, measurement: report.measurement, signer: report.idKeyDigest, securityVersion: UInt16(truncatingIfNeeded: report.guestSVN),
            reportData: report.reportData, debug: report.policy.debugAllowed, simulated: false)
        claims.snp = SNPClaims(
            hostData: report.hostData, idKeyDigest: report.idKeyDigest, reportedTCB: report.reportedTCB,
            turinTCBLayout: product.usesTurinTCBLayout, policy: report.policy.raw)
        return (report, claims)
    }
}
