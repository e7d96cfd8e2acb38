import VeilAttestation
import VeilCore

/// Why verified claims do not match a manifest package: one case per rule, naming the field,
/// what the evidence reported and what the package requires. `description` is the sentence
/// the coordinator returns to the launcher.
public enum PackageMismatch: Error, Equatable, Sendable, CustomStringConvertible {
    case teeKind(reported: TEEKind, required: TEEKind)
    case measurement(reported: [UInt8], required: [UInt8])
    case signer(reported: [UInt8], required: [UInt8])
    case productID(reported: UInt16, required: UInt16)
    case securityVersion(reported: UInt16, minimum: UInt16)
    case debug
    /// The package requires a container image measurement and the evidence binds none.
    case imageMeasurementMissing(required: [UInt8])
    case imageMeasurement(reported: [UInt8], required: [UInt8])
    case snpFieldsMissing
    case snp(SNPPolicyViolation)
    case tdRegistersMissing
    case rtmrMissing(index: Int, required: [UInt8])
    case rtmr(index: Int, reported: [UInt8], required: [UInt8])
    case mrConfigID(reported: [UInt8])
    case mrOwner(reported: [UInt8])
    case mrSeam(reported: [UInt8])

    public var description: String {
        switch self {
        case .teeKind(let reported, let required): return "TEE kind is \(reported.rawValue), package requires \(required.rawValue)"
        case .measurement(let reported, let required): return "measurement \(Hex.encode(reported)) is not the package's \(Hex.encode(required))"
        case .signer(let reported, let required): return "signer \(Hex.encode(reported)) is not the package's \(Hex.encode(required))"
        case .productID(let reported, let required): return "product id \(reported) is not the package's \(required)"
        case .securityVersion(let reported, let minimum): return "security version \(reported) is below the package's minimum \(minimum)"
        case .debug: return "debug TEE, and the package does not allow debug"
        case .imageMeasurementMissing(let required):
            return "the evidence binds no container image measurement; the package requires image \(Hex.encode(required)) (launch the converted image)"
        case .imageMeasurement(let reported, let required):
            return "container image measurement \(Hex.encode(reported)) is not the package's \(Hex.encode(required))"
        case .snpFieldsMissing: return "SNP claims without SNP fields"
        case .snp(let violation): return violation.description(requiredBy: "the package")
        case .tdRegistersMissing: return "TDX claims without TD registers"
        case .rtmrMissing(let index, let required): return "the claims carry no RTMR\(index), the package requires \(Hex.encode(required))"
        case .rtmr(let index, let reported, let required): return "RTMR\(index) \(Hex.encode(reported)) is not the package's \(Hex.encode(required))"
        case .mrConfigID(let reported): return "MRCONFIGID \(Hex.encode(reported)) is not the package's"
        case .mrOwner(let reported): return "MROWNER \(Hex.encode(reported)) is not the package's"
        case .mrSeam(let reported): return "MRSEAM \(Hex.encode(reported)) is not the package's"
        }
    }
}

extension Package {
    /// Checks `claims` against every rule of this package; the first rule broken is thrown.
    public func check(_ claims: Claims) throws(PackageMismatch) {
        if claims.tee != kind { throw .teeKind(reported: claims.tee, required: kind) }
        switch self {
        case .simulated(let enclave), .sgx(let enclave): try enclave.check(claims)
        case .tdx(let td): try td.check(claims)
        case .snp(let guest): try guest.check(claims)
        }
    }

    /// Why claims do not match this package (the broken rule's sentence), or `nil` when they do.
    public func mismatch(_ claims: Claims) -> String? {
        do {
            try check(claims)
            return nil
        } catch {
            return error.description
        }
    }
}

extension EnclaveIdentity {
    func check(_ claims: Claims) throws(PackageMismatch) {
        if let measurement, claims.measurement != measurement { throw .measurement(reported: claims.measurement, required: measurement) }
        if let signerID, claims.signer != signerID { throw .signer(reported: claims.signer, required: signerID) }
        if let productID, claims.productID != productID { throw .productID(reported: claims.productID, required: productID) }
        if let securityVersion, claims.securityVersion < securityVersion {
            throw .securityVersion(reported: claims.securityVersion, minimum: securityVersion)
        }
        if claims.debug && !allowDebug { throw .debug }
    }
}

extension TDIdentity {
    /// A register the package names is always compared: claims without it do not match.
    func check(_ claims: Claims) throws(PackageMismatch) {
        if claims.measurement != mrtd { throw .measurement(reported: claims.measurement, required: mrtd) }
        if claims.debug && !allowDebug { throw .debug }
        try checkImage(imageMeasurement, claims)
        guard let tdx = claims.tdx else { throw .tdRegistersMissing }
        for (index, expected) in rtmrs.enumerated() {
            guard let expected else { continue }
            guard index < tdx.rtmrs.count else { throw .rtmrMissing(index: index, required: expected) }
            if tdx.rtmrs[index] != expected { throw .rtmr(index: index, reported: tdx.rtmrs[index], required: expected) }
        }
        if let mrConfigID, tdx.mrConfigID != mrConfigID { throw .mrConfigID(reported: tdx.mrConfigID) }
        if let mrOwner, tdx.mrOwner != mrOwner { throw .mrOwner(reported: tdx.mrOwner) }
        if let mrSeam, tdx.mrSeam != mrSeam { throw .mrSeam(reported: tdx.mrSeam) }
    }
}

extension SNPIdentity {
    func check(_ claims: Claims) throws(PackageMismatch) {
        if claims.measurement != measurement { throw .measurement(reported: claims.measurement, required: measurement) }
        if let idKeyDigest, claims.signer != idKeyDigest { throw .signer(reported: claims.signer, required: idKeyDigest) }
        if claims.debug && !requirements.allowDebug { throw .debug }
        try checkImage(imageMeasurement, claims)
        guard let guest = claims.snp else { throw .snpFieldsMissing }
        do {
            try requirements.check(guest)
        } catch {
            throw .snp(error)
        }
    }
}

/// Confidential VMs: the image the launcher inside measured, when the package pins one.
private func checkImage(_ required: [UInt8]?, _ claims: Claims) throws(PackageMismatch) {
    guard let required else { return }
    guard let bound = claims.imageMeasurement else { throw .imageMeasurementMissing(required: required) }
    if bound != required { throw .imageMeasurement(reported: bound, required: required) }
}
