import Crypto
import _CryptoExtras
import FoundationEssentials

/// The key that signs SNP reports: a chip's VCEK (chain ARK → ASK → VCEK) or a cloud
/// provider's VLEK (chain ARK → ASVK → VLEK). Errors name the one involved.
public enum SNPEndorsementKey: String, Sendable, Equatable {
    case vcek = "VCEK"
    case vlek = "VLEK"

    /// The AMD signing key between the ARK and this key.
    public var issuer: String { self == .vcek ? "ASK" : "ASVK" }
}

/// Why an SEV-SNP report did not verify. Each case names the failed check.
public enum SNPError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformedReport(QuoteParseError)
    case malformedCertificate(String)
    /// The evidence has no VCEK/VLEK: the host supplied no certificates and none was fetched.
    case endorsementMissing
    case untrustedARK(product: String)
    case chainUntrusted(String)
    case certificateExpired(String)
    case certificateRevoked(String)
    case crlInvalid(String)
    case unsupportedSignatureAlgorithm(UInt32)
    case unsupportedSigningKey(UInt32)
    case chipIDMismatch
    case signingKeyMismatch(String)
    case productMismatch(certificate: String, expected: String, key: SNPEndorsementKey)
    case productUnknown(String)
    case reportedTCBMismatch(component: String, report: Int, certified: Int, key: SNPEndorsementKey)
    case signatureInvalid(SNPEndorsementKey)
    /// The report verified and the guest does not meet the requirements.
    case policy(SNPPolicyViolation)

    public var description: String {
        switch self {
        case .malformedReport(let error): return "malformed SNP report: \(error)"
        case .malformedCertificate(let why): return "malformed AMD certificate: \(why)"
        case .endorsementMissing:
            return "the SNP evidence carries no VCEK or VLEK: the host supplied no certificates (auxblob empty) and the verifier fetched none from AMD KDS"
        case .untrustedARK(let product): return "the ARK is not AMD's ARK-\(product)"
        case .chainUntrusted(let why): return "AMD certificate chain is not trusted: \(why)"
        case .certificateExpired(let subject): return "AMD certificate '\(subject)' is outside its validity period"
        case .certificateRevoked(let subject): return "AMD certificate '\(subject)' is revoked by AMD's CRL"
        case .crlInvalid(let why): return "AMD CRL invalid: \(why)"
        case .unsupportedSignatureAlgorithm(let algorithm): return "unsupported SNP signature algorithm \(algorithm) (1 = ECDSA P-384/SHA-384)"
        case .unsupportedSigningKey(let key): return "report signed by key type \(key); VCEK (0) and VLEK (1) are supported"
        case .signingKeyMismatch(let why): return "signing key mismatch: \(why)"
        case .chipIDMismatch: return "the VCEK's hwID is not the report's chip ID (VCEK of another chip)"
        case .productMismatch(let certificate, let expected, let key): return "\(key.rawValue) is for product \(certificate), expected \(expected)"
        case .productUnknown(let why): return "cannot tell the AMD product: \(why)"
        case .reportedTCBMismatch(let component, let report, let certified, let key):
            return "reported TCB \(component) SPL \(report) differs from the \(key.rawValue)'s \(certified)"
        case .signatureInvalid(let key): return "report signature does not verify with the \(key.rawValue)"
        case .policy(let violation): return violation.description
        }
    }
}

/// Verifies AMD SEV-SNP reports signed by a VCEK or VLEK: ARK (compiled in per product) →
/// ASK (or ASVK) → VCEK (or VLEK)
/// with RSASSA-PSS/SHA-384, the VCEK's hwID and TCB extensions against the report, the
/// ECDSA P-384 report signature, then the guest's ``SNPRequirements``.
public struct SNPVerifier: Sendable {
    public let product: AMDProduct
    public let policy: SNPRequirements

    /// The ARK to trust: the product's compiled-in AMD ARK, or another root for tests of
    /// PKI that AMD has no public samples of (VLEK).
    /// Parsed once here, not per verification; `nil` when the given PEM is not a certificate.
    let trustedARK: AMDCertificate?

    public init(product: AMDProduct, policy: SNPRequirements) {
        self.init(product: product, policy: policy, trustedARKPEM: product.arkPEM)
    }

    init(product: AMDProduct, policy: SNPRequirements, trustedARKPEM: String) {
        self.product = product
        self.policy = policy
        self.trustedARK = (try? AMDCertificate.parsePEM(trustedARKPEM))?.first
    }

    static let vcekOID = "1.3.6.1.4.1.3704.1"

    /// A VCEK or VLEK whose chain to the compiled-in ARK was verified; reusable for many
    /// reports of the same chip while `time` stays inside every certificate's validity.
    public struct VerifiedVCEK: Sendable {
        let certificate: AMDCertificate
        public let key: SNPEndorsementKey
        public let validUntil: Date
        /// Whether an AMD CRL was checked (ASK/ASVK and the key itself not revoked).
        public let revocationChecked: Bool
    }

    /// - Parameters:
    ///   - vcek: the VCEK or VLEK certificate (DER).
    ///   - chainPEM: ASK (or ASVK) then ARK (AMD KDS `cert_chain`).
    ///   - crl: AMD's CRL for the product (DER, KDS `crl`), checked when given.
    public func verify(report bytes: [UInt8], vcek vcekDER: [UInt8], chainPEM: String, crl: [UInt8]? = nil, at time: Date = Date()) throws(SNPError) -> (SNPReport, Claims) {
        let report: SNPReport
        do {
            report = try SNPReport(bytes)
        } catch {
            throw .malformedReport(error)
        }
        return try verify(report: report, bytes: bytes, vcek: try verifyChain(vcek: vcekDER, chainPEM: chainPEM, crl: crl, at: time), at: time)
    }

    /// ARK (must be AMD's for the product) → ASK/ASVK → VCEK/VLEK, RSASSA-PSS/SHA-384,
    /// validity at `time`, and revocation by AMD's CRL when one is given.
    public func verifyChain(vcek vcekDER: [UInt8], chainPEM: String, crl: [UInt8]? = nil, at time: Date) throws(SNPError) -> VerifiedVCEK {
        let vcek = try AMDCertificate(derEncoded: vcekDER)
        // A VLEK is not bound to a chip: it carries no hwID.
        let key: SNPEndorsementKey = vcek.extensions["\(Self.vcekOID).4"] == nil ? .vlek : .vcek
        let chain = try AMDCertificate.parsePEM(chainPEM)
        guard chain.count == 2 else {
            throw .chainUntrusted("cert_chain must hold the \(key.issuer) and the ARK, found \(chain.count) certificates")
        }
        let (ask, ark) = (chain[0], chain[1])
        guard let trustedARK else { throw .malformedCertificate("the trusted ARK is not a PEM certificate") }
        guard ark.der == trustedARK.der else { throw .untrustedARK(product: product.rawValue) }
        guard ark.isSigned(by: ark) else { throw .chainUntrusted("ARK self-signature does not verify") }
        guard ask.issuer == ark.subject, ask.isSigned(by: ark) else { throw .chainUntrusted("\(key.issuer) is not signed by ARK-\(product.rawValue)") }
        guard vcek.issuer == ask.subject, vcek.isSigned(by: ask) else { throw .chainUntrusted("\(key.rawValue) is not signed by the \(key.issuer)") }
        for certificate in [ark, ask, vcek] where !(certificate.notBefore <= time && time <= certificate.notAfter) {
            throw .certificateExpired("\(certificate.subject)")
        }
        if let name = vcek.stringExtension("\(Self.vcekOID).2"), AMDProduct(productName: name) != product {
            throw .productMismatch(certificate: name, expected: product.rawValue, key: key)
        }
        if let crl { try checkRevocation(crl, ark: ark, certificates: [ask, vcek], at: time) }
        return VerifiedVCEK(certificate: vcek, key: key, validUntil: min(ark.notAfter, ask.notAfter, vcek.notAfter), revocationChecked: crl != nil)
    }

    /// AMD's CRL (issued by the ARK, RSASSA-PSS/SHA-384) must verify, be current at `time`,
    /// and revoke none of `certificates`.
    func checkRevocation(_ der: [UInt8], ark: AMDCertificate, certificates: [AMDCertificate], at time: Date) throws(SNPError) {
        let crl: RevocationList
        do {
            crl = try RevocationList(derEncoded: der)
        } catch {
            throw .crlInvalid("\(error)")
        }
        guard crl.issuer == ark.subject else { throw .crlInvalid("issued by \(crl.issuer), not by ARK-\(product.rawValue)") }
        guard AMDCertificate.isPSSWithSHA384(crl.signatureAlgorithm), let key = _RSA.Signing.PublicKey(ark.publicKey),
            key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: crl.signature), for: SHA384.hash(data: crl.tbsBytes), padding: .PSS)
        else { throw .crlInvalid("signature does not verify with ARK-\(product.rawValue)'s key (RSASSA-PSS/SHA-384)") }
        guard time >= crl.thisUpdate else { throw .crlInvalid("not valid before its thisUpdate \(crl.thisUpdate)") }
        if let next = crl.nextUpdate, time > next { throw .crlInvalid("expired at its nextUpdate \(next)") }
        for certificate in certificates where crl.revokedSerials.contains(certificate.serial) {
            throw .certificateRevoked("\(certificate.subject)")
        }
    }

    /// The report checks, with a VCEK or VLEK verified before.
    public func verify(report: SNPReport, bytes: [UInt8], vcek verified: VerifiedVCEK, at time: Date = Date()) throws(SNPError) -> (SNPReport, Claims) {
        guard time <= verified.validUntil else { throw .certificateExpired("\(verified.certificate.subject)") }
        let vcek = verified.certificate
        if let reportProduct = report.product, reportProduct != product {
            throw .productMismatch(certificate: product.rawValue, expected: "\(reportProduct.rawValue) (the report's CPUID)", key: verified.key)
        }
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
                throw .malformedCertificate("\(verified.key.rawValue) lacks the \(name) SPL extension")
            }
            guard certified == Int(value) else { throw .reportedTCBMismatch(component: name, report: Int(value), certified: certified, key: verified.key) }
        }

        guard let key = P384.Signing.PublicKey(vcek.publicKey),
            let signature = try? P384.Signing.ECDSASignature(rawRepresentation: report.signature),
            key.isValidSignature(signature, for: bytes[..<SNPReport.signedLength])
        else { throw .signatureInvalid(verified.key) }

        let guest = SNPClaims(
            hostData: report.hostData, idKeyDigest: report.idKeyDigest, reportedTCB: report.reportedTCB,
            turinTCBLayout: product.usesTurinTCBLayout, policy: report.policy.raw, vmpl: report.vmpl)
        do {
            try policy.check(guest)
        } catch {
            throw .policy(error)
        }
        var claims = Claims(
            tee: .snp, measurement: report.measurement, signer: report.idKeyDigest, securityVersion: UInt16(truncatingIfNeeded: report.guestSVN),
            reportData: report.reportData, debug: report.policy.debugAllowed, simulated: false)
        claims.snp = guest
        return (report, claims)
    }
}
