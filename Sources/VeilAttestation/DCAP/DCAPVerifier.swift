import Crypto
import FoundationEssentials
import SwiftASN1
import Synchronization
import VeilCore
import X509

/// The outcome of verifying a DCAP quote.
public struct DCAPResult: Sendable {
    public var quote: DCAPQuote
    /// Platform, TDX module and QE verdicts converged as Intel's library does, all advisories.
    public var verdict: TCBVerdict
    public var platformVerdict: TCBVerdict
    public var qeVerdict: TCBVerdict
    public var claims: Claims
}

/// Verifies Intel SGX and TDX DCAP quotes against collateral, step by step as Intel's quote
/// verification library does; each failed step is its own ``DCAPError``.
///
/// Collateral checks (chains, CRLs, signatures, validity windows) depend only on the
/// collateral and the time, so ``prepare(_:at:)`` does them once and ``verify(_:prepared:at:)``
/// reuses the result for many quotes.
public struct DCAPVerifier: Sendable {
    public let trustedRoot: Certificate

    public init(trustedRoot: Certificate = DCAPVerifier.intelSGXRootCA) {
        self.trustedRoot = trustedRoot
    }

    /// Collateral whose signatures, chains, CRLs and validity windows were checked at one time.
    ///
    /// Invariant: every check that does not involve a quote held at ``time`` and holds until
    /// ``validUntil`` (the earliest nextUpdate / notAfter involved). It also remembers PCK
    /// chains it has verified (keyed by SHA-256 of the chain's bytes), so verifying many
    /// quotes from the same platforms skips their chain signatures.
    public struct PreparedCollateral: Sendable {
        let tcbInfo: TCBInfo
        let qeIdentity: QEIdentity
        let rootCRL: RevocationList
        let pckCRL: RevocationList
        /// Certificates whose signatures were verified while preparing.
        let verifiedCertificates: [Certificate]
        let pckCache = PCKChainCache()
        public let time: Date
        public let validUntil: Date
    }

    public func verify(quote bytes: [UInt8], collateral: DCAPCollateral, at time: Date = Date()) throws(DCAPError) -> DCAPResult {
        try verify(bytes, prepared: try prepare(collateral, at: time), at: time)
    }

    /// Steps that depend only on the collateral. Every signature is checked before any update
    /// window, so a document that is both forged and stale is reported as forged.
    public func prepare(_ collateral: DCAPCollateral, at time: Date) throws(DCAPError) -> PreparedCollateral {
        var late: DCAPError?
        func later(_ check: () throws(DCAPError) -> Void) {
            do throws(DCAPError) { try check() } catch { late = late ?? error }
        }
        let rootCRL = try RevocationList(derEncoded: collateral.rootCACRL)
        try rootCRL.verifySignature(issuedBy: trustedRoot, name: "root CA CRL")
        later { () throws(DCAPError) in try rootCRL.checkWindow(at: time, name: "root CA CRL") }
        let pckCRL = try RevocationList(derEncoded: collateral.pckCRL)
        var verified: [Certificate] = []
        let pckCRLChain = try verifyChain(
            Self.certificates(collateral.pckCRLIssuerChain, "PCK CRL issuer"), name: "PCK CRL issuer", at: time, rootCRL: rootCRL, pckCRL: nil,
            verified: &verified)
        try pckCRL.verifySignature(issuedBy: pckCRLChain[0], name: "PCK CRL")
        later { () throws(DCAPError) in try pckCRL.checkWindow(at: time, name: "PCK CRL") }

        let (tcbInfo, tcbChain, tcbWindow) = try verifySigned(
            collateral.tcbInfo, signature: collateral.tcbInfoSignature, chain: collateral.tcbInfoIssuerChain, name: "TCB info",
            invalid: .tcbInfoSignatureInvalid, memo: ParseMemos.tcbInfo, at: time, rootCRL: rootCRL, pckCRL: pckCRL, verified: &verified)
        let (qeIdentity, qeChain, qeWindow) = try verifySigned(
            collateral.qeIdentity, signature: collateral.qeIdentitySignature, chain: collateral.qeIdentityIssuerChain, name: "QE identity",
            invalid: .qeIdentitySignatureInvalid, memo: ParseMemos.qeIdentity, at: time, rootCRL: rootCRL, pckCRL: pckCRL, verified: &verified)
        if let late { throw late }
        let tcbUntil = try tcbWindow.get()
        let qeUntil = try qeWindow.get()
        let certificatesUntil = (tcbChain + qeChain + pckCRLChain).map(\.notValidAfter).min() ?? time
        let crlUntil = [rootCRL.nextUpdate, pckCRL.nextUpdate].compactMap { $0 }.min() ?? certificatesUntil
        return PreparedCollateral(
            tcbInfo: tcbInfo, qeIdentity: qeIdentity, rootCRL: rootCRL, pckCRL: pckCRL, verifiedCertificates: verified, time: time,
            validUntil: min(tcbUntil, qeUntil, certificatesUntil, crlUntil))
    }

    /// Steps that depend on the quote, with collateral prepared at or before `time` and still
    /// valid at `time`.
    public func verify(_ bytes: [UInt8], prepared: PreparedCollateral, at time: Date) throws(DCAPError) -> DCAPResult {
        guard time >= prepared.time else { throw .collateralNotYetValid(what: "prepared collateral", issueDate: prepared.time) }
        guard time <= prepared.validUntil else { throw .collateralExpired(what: "prepared collateral", nextUpdate: prepared.validUntil) }
        let quote: DCAPQuote
        do {
            quote = try DCAPQuote(bytes)
        } catch {
            throw .malformedQuote(error)
        }

        guard quote.header.qeVendorID == Self.intelQEVendorID else { throw .qeVendorUnknown(Hex.encode(quote.header.qeVendorID)) }

        let (pckLeaf, extensions) = try verifiedPCK(quote.pckChainPEM, prepared: prepared, at: time)

        guard Self.verifyRaw(signature: quote.qeReportSignature, data: quote.qeReportBytes, key: pckLeaf.publicKey) else {
            throw .qeReportSignatureInvalid
        }
        let expectedQEData = Array(SHA256.hash(data: quote.attestationKey + quote.qeAuthData)) + [UInt8](repeating: 0, count: 32)
        guard quote.qeReport.reportData == expectedQEData else { throw .qeReportDataMismatch }

        let qeVerdict = try Self.matchQEIdentity(quote.qeReport, prepared.qeIdentity, tee: quote.header.tee)

        guard let attestationKey = try? P256.Signing.PublicKey(rawRepresentation: quote.attestationKey),
            let signature = try? P256.Signing.ECDSASignature(rawRepresentation: quote.signature),
            attestationKey.isValidSignature(signature, for: bytes[..<quote.signedLength])
        else { throw .quoteSignatureInvalid }

        var platform = try Self.matchPlatformTCB(quote, extensions, prepared.tcbInfo)
        if case .td(let report) = quote.body, let module = try Self.matchTDXModule(report, prepared.tcbInfo) {
            platform = platform.converged(with: module)
        }
        let verdict = platform.converged(with: qeVerdict)
        guard verdict.status != .revoked else { throw .tcbRevoked(advisoryIDs: verdict.advisoryIDs) }

        let claims: Claims
        switch quote.body {
        case .sgx(let report):
            claims = Claims(
                tee: .sgx, measurement: report.mrEnclave, signer: report.mrSigner, productID: report.isvProdID,
                securityVersion: report.isvSVN, reportData: report.reportData, debug: report.debug, simulated: false, tcb: verdict)
        case .td(let report):
            var tdClaims = Claims(
                tee: .tdx, measurement: report.mrTD, signer: report.mrSignerSeam, reportData: report.reportData, debug: report.debug,
                simulated: false, tcb: verdict)
            tdClaims.tdx = TDXMeasurements(
                rtmrs: report.rtmrs, mrConfigID: report.mrConfigID, mrOwner: report.mrOwner, mrOwnerConfig: report.mrOwnerConfig,
                mrSeam: report.mrSeam)
            claims = tdClaims
        }
        return DCAPResult(quote: quote, verdict: verdict, platformVerdict: platform, qeVerdict: qeVerdict, claims: claims)
    }

    // MARK: - Steps

    /// A signed Intel JSON document: its signing chain to the root, its signature over the
    /// exact bytes, then its issueDate…nextUpdate window. Returns the document, the chain
    /// and the end of the window or why `time` is outside it (for the caller to report after
    /// every signature).
    func verifySigned<Document: SignedCollateralDocument>(
        _ bytes: [UInt8], signature: [UInt8], chain pem: [UInt8], name: String, invalid: DCAPError, memo: ParseMemo<Document>,
        at time: Date, rootCRL: RevocationList, pckCRL: RevocationList, verified: inout [Certificate]
    ) throws(DCAPError) -> (Document, [Certificate], Result<Date, DCAPError>) {
        let chain = try verifyChain(
            Self.certificates(pem, name), name: "\(name) signing", at: time, rootCRL: rootCRL, pckCRL: pckCRL, verified: &verified)
        guard Self.verifyRaw(signature: signature, data: bytes, key: chain[0].publicKey) else { throw invalid }
        let document = try memo.value(for: bytes) { () throws(DCAPError) -> Document in
            do {
                return try JSONDecoder().decode(Document.self, from: Data(bytes))
            } catch {
                throw .malformedCollateral("\(name) JSON: \(error)")
            }
        }
        let window = Result { () throws(DCAPError) -> Date in try Self.window(issue: document.issueDate, next: document.nextUpdate, what: name, at: time) }
        return (document, chain, window)
    }

    /// The PCK chain from the quote, verified to the root with revocation by both CRLs, or
    /// taken from the prepared collateral's cache of chains verified before.
    func verifiedPCK(_ pem: [UInt8], prepared: PreparedCollateral, at time: Date) throws(DCAPError) -> (Certificate, PCKExtensions) {
        let key = Array(SHA256.hash(data: pem))
        if let entry = prepared.pckCache.lookup(key), time <= entry.validUntil {
            return (entry.leaf, entry.extensions)
        }
        var verified = prepared.verifiedCertificates
        let chain = try verifyChain(
            Self.certificates(pem, "PCK"), name: "PCK", at: time, rootCRL: prepared.rootCRL, pckCRL: prepared.pckCRL, verified: &verified)
        let leaf = chain[0]
        guard leaf.issuer == prepared.pckCRL.issuer else {
            throw .crlInvalid("the PCK CRL is issued by \(prepared.pckCRL.issuer), not by the PCK certificate's issuer \(leaf.issuer)")
        }
        let extensions = try PCKExtensions(leaf)
        let validUntil = chain.map(\.notValidAfter).min() ?? time
        prepared.pckCache.store(key, PCKChainCache.Entry(leaf: leaf, extensions: extensions, validUntil: validUntil))
        return (leaf, extensions)
    }

    static func matchQEIdentity(_ report: DCAPQuote.EnclaveReport, _ identity: QEIdentity, tee: DCAPQuote.TEE) throws(DCAPError) -> TCBVerdict {
        let expectedID = tee == .sgx ? "QE" : "TD_QE"
        guard identity.id == expectedID else { throw .qeIdentityMismatch("QE identity is for '\(identity.id)', the quote needs '\(expectedID)'") }
        guard identity.version == 2 || (tee == .tdx && identity.version == 3) else {
            throw .qeIdentityMismatch("unsupported QE identity version \(identity.version)")
        }
        guard let mrsigner = Hex.decode(identity.mrsigner), report.mrSigner == mrsigner else {
            throw .qeIdentityMismatch("MRSIGNER \(Hex.encode(report.mrSigner)) is not \(identity.mrsigner.lowercased())")
        }
        guard report.isvProdID == identity.isvprodid else {
            throw .qeIdentityMismatch("ISVPRODID \(report.isvProdID) is not \(identity.isvprodid)")
        }
        guard let misc = Hex.decode(identity.miscselect), let miscMask = Hex.decode(identity.miscselectMask), misc.count == 4, miscMask.count == 4 else {
            throw .malformedCollateral("QE identity miscselect/miscselectMask")
        }
        let reportMisc = withUnsafeBytes(of: report.miscSelect.littleEndian) { Array($0) }
        guard zip(zip(reportMisc, misc), miscMask).allSatisfy({ ($0.0 & $1) == ($0.1 & $1) }) else {
            throw .qeIdentityMismatch("MISCSELECT does not match under the mask")
        }
        guard let attributes = Hex.decode(identity.attributes), let mask = Hex.decode(identity.attributesMask), attributes.count == 16, mask.count == 16 else {
            throw .malformedCollateral("QE identity attributes/attributesMask")
        }
        guard zip(zip(report.attributes, attributes), mask).allSatisfy({ ($0.0 & $1) == ($0.1 & $1) }) else {
            throw .qeIdentityMismatch("ATTRIBUTES do not match under the mask")
        }
        // Intel: an ISVSVN below every level is "not supported", not merely out of date.
        guard let level = identity.tcbLevels.first(where: { Int(report.isvSVN) >= $0.tcb.isvsvn }) else {
            throw .qeTCBNotSupported(isvsvn: report.isvSVN)
        }
        return TCBVerdict(status: try identityStatus(level.tcbStatus, of: "QE identity"), advisoryIDs: level.advisoryIDs ?? [])
    }

    /// The first TCB level (Intel lists them best first) whose SGX components and PCESVN are
    /// all at or below the PCK certificate's and, for TDX, whose TDX components are at or
    /// below TEE_TCB_SVN's. As Intel's library does, TEE_TCB_SVN is compared from byte 2 when
    /// byte 1 (the TDX module's major version) is set: bytes 0–1 are graded by the module
    /// identity instead (``matchTDXModule(_:_:)``).
    static func matchPlatformTCB(_ quote: DCAPQuote, _ pck: PCKExtensions, _ info: TCBInfo) throws(DCAPError) -> TCBVerdict {
        guard let fmspc = Hex.decode(info.fmspc), fmspc == pck.fmspc else {
            throw .fmspcMismatch(pck: Hex.encode(pck.fmspc), tcbInfo: info.fmspc.lowercased())
        }
        guard let pceID = Hex.decode(info.pceId), pceID == pck.pceID else {
            throw .tcbInfoMismatch("PCE ID \(Hex.encode(pck.pceID)) is not the TCB info's \(info.pceId)")
        }
        switch quote.header.tee {
        case .sgx:
            guard (2...3).contains(info.version), info.id == nil || info.id == "SGX" else {
                throw .tcbInfoMismatch(info.version > 3 ? "TCB info version \(info.version) is not supported" : "SGX quote with \(info.id ?? "?") TCB info")
            }
        case .tdx:
            guard info.version == 3, info.id == "TDX" else {
                throw .tcbInfoMismatch(info.version == 2 ? "TCB info version 2 has no TDX levels; a TDX quote needs version 3"
                                       : "TDX quote with \(info.id ?? "SGX") TCB info version \(info.version)")
            }
        }
        for level in info.tcbLevels {
            guard let sgx = level.tcb.sgxtcbcomponents, sgx.count == 16 else { throw .malformedCollateral("TCB level without 16 SGX components") }
            guard pck.pceSVN >= level.tcb.pcesvn, zip(pck.componentSVNs, sgx).allSatisfy({ Int($0) >= $1.svn }) else { continue }
            if case .td(let report) = quote.body {
                guard let tdx = level.tcb.tdxtcbcomponents, tdx.count == 16 else { throw .malformedCollateral("TDX TCB level without 16 TDX components") }
                let first = report.teeTCBSVN[1] > 0 ? 2 : 0
                guard (first..<16).allSatisfy({ Int(report.teeTCBSVN[$0]) >= tdx[$0].svn }) else { continue }
            }
            return TCBVerdict(status: try status(level.tcbStatus), advisoryIDs: level.advisoryIDs ?? [])
        }
        throw .noMatchingTCBLevel
    }

    /// TDX module identity: for module major versions above 0, TEE_TCB_SVN[1] names the
    /// identity `TDX_%02X` whose signer and attributes must match the SEAM's and whose TCB
    /// levels grade TEE_TCB_SVN[0]. Major version 0 has no identity to check (nil).
    static func matchTDXModule(_ report: DCAPQuote.TDReport, _ info: TCBInfo) throws(DCAPError) -> TCBVerdict? {
        let major = report.teeTCBSVN[1]
        guard major > 0 else { return nil }
        let id = "TDX_" + Hex.encode([major]).uppercased()
        guard let identity = info.tdxModuleIdentities?.first(where: { $0.id.uppercased() == id }) else {
            throw .tdxModuleIdentityMismatch("TCB info has no module identity \(id)")
        }
        guard let signer = Hex.decode(identity.mrsigner), signer == report.mrSignerSeam else {
            throw .tdxModuleIdentityMismatch("MRSIGNERSEAM does not match \(id)")
        }
        guard let attributes = Hex.decode(identity.attributes), let mask = Hex.decode(identity.attributesMask), attributes.count == 8, mask.count == 8,
            zip(zip(report.seamAttributes, attributes), mask).allSatisfy({ ($0.0 & $1) == ($0.1 & $1) })
        else { throw .tdxModuleIdentityMismatch("SEAM attributes do not match \(id)") }
        guard let level = identity.tcbLevels.first(where: { Int(report.teeTCBSVN[0]) >= $0.tcb.isvsvn }) else {
            throw .tdxModuleIdentityMismatch("module SVN \(report.teeTCBSVN[0]) is below every \(id) level")
        }
        return TCBVerdict(status: try identityStatus(level.tcbStatus, of: "TDX module identity"), advisoryIDs: level.advisoryIDs ?? [])
    }

    static func status(_ text: String) throws(DCAPError) -> TCBStatus {
        guard let status = TCBStatus(rawValue: text) else { throw .malformedCollateral("unknown TCB status '\(text)'") }
        return status
    }

    /// QE and TDX module identity levels grade one SVN: only these three statuses exist there.
    static func identityStatus(_ text: String, of document: String) throws(DCAPError) -> TCBStatus {
        guard let status = TCBStatus(rawValue: text), [.upToDate, .outOfDate, .revoked].contains(status) else {
            throw .malformedCollateral("\(document) TCB level status '\(text)' is not UpToDate, OutOfDate or Revoked")
        }
        return status
    }

    /// Intel's QE vendor ID: quotes from any other quoting enclave are refused.
    static let intelQEVendorID: [UInt8] = [0x93, 0x9A, 0x72, 0x33, 0xF7, 0x9C, 0x4C, 0xA9, 0x94, 0x0A, 0x0D, 0xB3, 0x95, 0x7F, 0x06, 0x07]

    // MARK: - Certificates

    static func certificates(_ pem: [UInt8], _ name: String) throws(DCAPError) -> [Certificate] {
        try ParseMemos.certificates.value(for: pem) { () throws(DCAPError) -> [Certificate] in try parseCertificates(pem, name) }
    }

    private static func parseCertificates(_ pem: [UInt8], _ name: String) throws(DCAPError) -> [Certificate] {
        let text = String(decoding: pem.prefix(while: { $0 != 0 }), as: UTF8.self)
        guard let documents = try? PEMDocument.parseMultiple(pemString: text), !documents.isEmpty else {
            throw .malformedCertificate("\(name) chain is not PEM certificates")
        }
        var certificates: [Certificate] = []
        for document in documents {
            // Intel's and AMD's reference verifiers (webpki) refuse a signature BIT STRING that
            // declares unused bits; the bytes would still verify, so the encoding is checked here.
            guard CertificateEncoding.signatureHasNoUnusedBits(document.derBytes) else {
                throw .malformedCertificate("\(name) chain: a certificate's signature BIT STRING declares unused bits (non-canonical DER)")
            }
            do {
                certificates.append(try Certificate(derEncoded: document.derBytes))
            } catch {
                throw .malformedCertificate("\(name) chain: \(error)")
            }
        }
        return certificates
    }

    /// Verifies `chain` (leaf first; the trusted root may or may not be included) up to the
    /// trusted root at `time`, with revocation by the root CA CRL (certificates the root
    /// issued) and the PCK CRL (certificates its issuer issued). Returns the chain without the root.
    func verifyChain(
        _ given: [Certificate], name: String, at time: Date, rootCRL: RevocationList, pckCRL: RevocationList?, verified: inout [Certificate]
    ) throws(DCAPError) -> [Certificate] {
        var chain = given
        if let last = chain.last, last == trustedRoot { chain.removeLast() }
        guard !chain.isEmpty else { throw .chainUntrusted(chain: name, reason: "no certificate below the root") }
        guard trustedRoot.notValidBefore <= time, time <= trustedRoot.notValidAfter else {
            throw .certificateExpired(chain: name, subject: "\(trustedRoot.subject)")
        }
        for (index, certificate) in chain.enumerated() {
            let issuer = index + 1 < chain.count ? chain[index + 1] : trustedRoot
            guard certificate.issuer == issuer.subject else {
                let reason = index + 1 == chain.count
                    ? "it ends at '\(certificate.issuer)', not at the trusted root '\(trustedRoot.subject)'"
                    : "'\(certificate.subject)' is not issued by the next certificate '\(issuer.subject)'"
                throw .chainUntrusted(chain: name, reason: reason)
            }
            // A certificate verified earlier is byte-identical, so its issuer's signature holds.
            if !verified.contains(certificate) {
                guard issuer.publicKey.isValidSignature(certificate.signature, for: certificate) else {
                    throw .chainUntrusted(chain: name, reason: "signature on '\(certificate.subject)' does not verify with '\(issuer.subject)''s key")
                }
                verified.append(certificate)
            }
            if index > 0 {
                guard let constraints = try? certificate.extensions.basicConstraints, case .isCertificateAuthority = constraints else {
                    throw .chainUntrusted(chain: name, reason: "'\(certificate.subject)' is not a CA")
                }
            }
            guard certificate.notValidBefore <= time, time <= certificate.notValidAfter else {
                throw .certificateExpired(chain: name, subject: "\(certificate.subject)")
            }
            if issuer == trustedRoot, rootCRL.revokes(certificate) {
                throw .certificateRevoked(chain: name, subject: "\(certificate.subject)")
            }
            if let pckCRL, certificate.issuer == pckCRL.issuer, pckCRL.revokes(certificate) {
                throw .certificateRevoked(chain: name, subject: "\(certificate.subject)")
            }
        }
        return chain
    }

    /// ECDSA P-256 / SHA-256 with a raw r ‖ s signature, as Intel signs TCB info, QE identity and QE reports.
    static func verifyRaw(signature: [UInt8], data: [UInt8], key: Certificate.PublicKey) -> Bool {
        guard let key = P256.Signing.PublicKey(key), let signature = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else {
            return false
        }
        return key.isValidSignature(signature, for: data)
    }

    static func window(issue: String, next: String, what: String, at time: Date) throws(DCAPError) -> Date {
        guard let issueDate = try? Date(issue, strategy: .iso8601), let nextUpdate = try? Date(next, strategy: .iso8601) else {
            throw .malformedCollateral("\(what) issueDate/nextUpdate are not RFC 3339 times")
        }
        guard time >= issueDate else { throw .collateralNotYetValid(what: what, issueDate: issueDate) }
        guard time <= nextUpdate else { throw .collateralExpired(what: what, nextUpdate: nextUpdate) }
        return nextUpdate
    }
}

/// PCK chains a prepared collateral has verified, keyed by SHA-256 of the chain bytes.
/// Bounded: when full, it is cleared (a cache, never a source of truth).
final class PCKChainCache: Sendable {
    struct Entry: Sendable {
        let leaf: Certificate
        let extensions: PCKExtensions
        /// The earliest notAfter in the chain.
        let validUntil: Date
    }

    static let capacity = 4096
    private let entries = Mutex<[[UInt8]: Entry]>([:])

    func lookup(_ key: [UInt8]) -> Entry? { entries.withLock { $0[key] } }

    func store(_ key: [UInt8], _ entry: Entry) {
        entries.withLock {
            if $0.count >= Self.capacity { $0.removeAll(keepingCapacity: true) }
            $0[key] = entry
        }
    }
}
