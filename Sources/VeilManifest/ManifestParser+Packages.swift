import VeilAttestation
import VeilCore

extension ManifestParser {
    /// One `Packages` entry: its `Kind`, then the fields that kind allows (every problem is
    /// reported, also for a kind that is itself refused).
    mutating func package(_ value: JSONValue, _ path: String, allowSimulation: Bool) -> Package? {
        guard case .object(let raw) = value else {
            problem(path, "must be an object, found \(value.typeName)")
            return nil
        }
        let before = problems.count
        // Fields are checked against the declared kind even when that kind is refused, so
        // every problem is reported at once.
        var declared: TEEKind?
        if let text = string(raw["Kind"], "\(path).Kind") {
            declared = TEEKind(rawValue: text)
            switch declared {
            case .simulated where !allowSimulation:
                problem("\(path).Kind", "simulated packages need \"Config\": {\"AllowSimulation\": true} (development only: no confidentiality)")
            case nil: problem("\(path).Kind", "unknown kind '\(text)' (known: simulated, sgx, tdx, snp)")
            default: break
            }
        } else if raw["Kind"] == nil {
            problem("\(path).Kind", "required")
        }
        let kind = declared ?? .simulated
        let allowed: Set<String>
        switch kind {
        case .sgx: allowed = ["Kind", "UniqueID", "SignerID", "ProductID", "SecurityVersion", "Debug", "AcceptedTCBStatuses", "AcceptedAdvisories"]
        case .tdx:
            allowed = ["Kind", "MRTD", "RTMR0", "RTMR1", "RTMR2", "RTMR3", "MRConfigID", "MROwner", "MRSeam", "ImageMeasurement", "Debug",
                       "AcceptedTCBStatuses", "AcceptedAdvisories"]
        case .snp: allowed = ["Kind", "Measurement", "HostData", "IDKeyDigest", "MinimumTCB", "AllowMigrationAgent", "VMPL", "ImageMeasurement", "Debug"]
        case .simulated: allowed = ["Kind", "Measurement", "SignerID", "ProductID", "SecurityVersion", "Debug"]
        }
        guard let fields = object(value, path, allowed: allowed) else { return nil }
        let allowDebug = bool(fields["Debug"], "\(path).Debug") ?? false
        let package: Package
        switch kind {
        case .snp: package = .snp(snpIdentity(fields, path, allowDebug: allowDebug))
        case .tdx:
            var td = tdIdentity(fields, path, allowDebug: allowDebug)
            td.tcb = tcbAcceptanceFields(fields, path)
            package = .tdx(td)
        case .sgx:
            var enclave = enclaveIdentity(fields, path, kind: kind, allowDebug: allowDebug)
            enclave.tcb = tcbAcceptanceFields(fields, path)
            package = .sgx(enclave)
        case .simulated: package = .simulated(enclaveIdentity(fields, path, kind: kind, allowDebug: allowDebug))
        }
        guard problems.count == before else { return nil }
        return package
    }

    /// Confidential VMs: the container image's measurement, bound by the launcher in the VM.
    private mutating func imageMeasurement(_ fields: [String: JSONValue], _ path: String) -> [UInt8]? {
        let image = hex(fields["ImageMeasurement"], "\(path).ImageMeasurement", bytes: 32)
        if image?.allSatisfy({ $0 == 0 }) == true { problem("\(path).ImageMeasurement", "must not be all zero") }
        return image
    }

    /// A required hex field; a placeholder (reported as a problem) when missing or malformed.
    private mutating func requiredHex(_ fields: [String: JSONValue], _ name: String, _ path: String, bytes: Int, _ why: String) -> [UInt8] {
        if fields[name] == nil { problem("\(path).\(name)", "required: \(why)") }
        return hex(fields[name], "\(path).\(name)", bytes: bytes) ?? []
    }

    private mutating func snpIdentity(_ fields: [String: JSONValue], _ path: String, allowDebug: Bool) -> SNPIdentity {
        let measurement = requiredHex(fields, "Measurement", path, bytes: 48, "the guest's launch measurement (48 bytes)")
        var guest = SNPIdentity(measurement: measurement, requirements: SNPRequirements(
            minimumTCB: minimumTCB(fields["MinimumTCB"], "\(path).MinimumTCB") ?? .any,
            // VMPL 0 unless stated: a report from above an SVSM is not the guest kernel's.
            vmpl: integer(fields["VMPL"], "\(path).VMPL", in: 0...3).map(UInt32.init) ?? 0,
            allowDebug: allowDebug,
            allowMigrationAgent: bool(fields["AllowMigrationAgent"], "\(path).AllowMigrationAgent") ?? false,
            hostData: hex(fields["HostData"], "\(path).HostData", bytes: 32)))
        guest.idKeyDigest = hex(fields["IDKeyDigest"], "\(path).IDKeyDigest", bytes: 48)
        guest.imageMeasurement = imageMeasurement(fields, path)
        return guest
    }

    private mutating func tdIdentity(_ fields: [String: JSONValue], _ path: String, allowDebug: Bool) -> TDIdentity {
        var td = TDIdentity(mrtd: requiredHex(fields, "MRTD", path, bytes: 48, "the TD's build-time measurement"))
        for index in 0..<4 {
            td.rtmrs[index] = hex(fields["RTMR\(index)"], "\(path).RTMR\(index)", bytes: 48)
        }
        td.mrConfigID = hex(fields["MRConfigID"], "\(path).MRConfigID", bytes: 48)
        td.mrOwner = hex(fields["MROwner"], "\(path).MROwner", bytes: 48)
        td.mrSeam = hex(fields["MRSeam"], "\(path).MRSeam", bytes: 48)
        td.imageMeasurement = imageMeasurement(fields, path)
        td.allowDebug = allowDebug
        return td
    }

    /// SGX and simulated packages: a measurement, or a signer with product and version.
    private mutating func enclaveIdentity(_ fields: [String: JSONValue], _ path: String, kind: TEEKind, allowDebug: Bool) -> EnclaveIdentity {
        let measurementField = kind == .sgx ? "UniqueID" : "Measurement"
        let enclave = EnclaveIdentity(
            measurement: hex(fields[measurementField], "\(path).\(measurementField)", bytes: 32),
            signerID: hex(fields["SignerID"], "\(path).SignerID", bytes: kind == .sgx ? 32 : nil),
            productID: integer(fields["ProductID"], "\(path).ProductID", in: 0...Int(UInt16.max)).map(UInt16.init),
            securityVersion: integer(fields["SecurityVersion"], "\(path).SecurityVersion", in: 0...Int(UInt16.max)).map(UInt16.init),
            allowDebug: allowDebug)
        if fields[measurementField] == nil && fields["SignerID"] == nil {
            problem(path, "needs \(measurementField), or SignerID (with ProductID and SecurityVersion): otherwise any software would match")
        }
        if fields["SignerID"] != nil && (fields["ProductID"] == nil || fields["SecurityVersion"] == nil) {
            problem(path, "SignerID needs ProductID and SecurityVersion too")
        }
        return enclave
    }
}
