import VeilAttestation

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
        case .sgx: allowed = ["Kind", "UniqueID", "SignerID", "ProductID", "SecurityVersion", "Debug"]
        case .tdx: allowed = ["Kind", "MRTD", "RTMR0", "RTMR1", "RTMR2", "RTMR3", "MRConfigID", "MROwner", "MRSeam", "ImageMeasurement", "Debug"]
        case .snp: allowed = ["Kind", "Measurement", "HostData", "IDKeyDigest", "MinimumTCB", "AllowMigrationAgent", "VMPL", "ImageMeasurement", "Debug"]
        case .simulated: allowed = ["Kind", "Measurement", "SignerID", "ProductID", "SecurityVersion", "Debug"]
        }
        guard let fields = object(value, path, allowed: allowed) else { return nil }
        var package = Package(kind: kind, debug: bool(fields["Debug"], "\(path).Debug") ?? false)
        // Confidential VMs: the container image's measurement, bound by the launcher in the VM.
        package.imageMeasurement = hex(fields["ImageMeasurement"], "\(path).ImageMeasurement", bytes: 32)
        if package.imageMeasurement?.allSatisfy({ $0 == 0 }) == true { problem("\(path).ImageMeasurement", "must not be all zero") }
        switch kind {
        case .snp: snpFields(fields, path, into: &package)
        case .tdx: tdxFields(fields, path, into: &package)
        case .sgx, .simulated: enclaveFields(fields, path, into: &package)
        }
        guard problems.count == before else { return nil }
        return package
    }

    private mutating func snpFields(_ fields: [String: JSONValue], _ path: String, into package: inout Package) {
        package.measurement = hex(fields["Measurement"], "\(path).Measurement", bytes: 48)
        if fields["Measurement"] == nil { problem("\(path).Measurement", "required: the guest's launch measurement (48 bytes)") }
        package.signerID = hex(fields["IDKeyDigest"], "\(path).IDKeyDigest", bytes: 48)
        package.snp = SNPRequirements(
            minimumTCB: minimumTCB(fields["MinimumTCB"], "\(path).MinimumTCB") ?? .any,
            // VMPL 0 unless stated: a report from above an SVSM is not the guest kernel's.
            vmpl: integer(fields["VMPL"], "\(path).VMPL", in: 0...3).map(UInt32.init) ?? 0,
            allowDebug: package.debug,
            allowMigrationAgent: bool(fields["AllowMigrationAgent"], "\(path).AllowMigrationAgent") ?? false,
            hostData: hex(fields["HostData"], "\(path).HostData", bytes: 32))
    }

    private mutating func tdxFields(_ fields: [String: JSONValue], _ path: String, into package: inout Package) {
        package.measurement = hex(fields["MRTD"], "\(path).MRTD", bytes: 48)
        if fields["MRTD"] == nil { problem("\(path).MRTD", "required: the TD's build-time measurement") }
        for index in 0..<4 {
            package.rtmrs[index] = hex(fields["RTMR\(index)"], "\(path).RTMR\(index)", bytes: 48)
        }
        package.mrConfigID = hex(fields["MRConfigID"], "\(path).MRConfigID", bytes: 48)
        package.mrOwner = hex(fields["MROwner"], "\(path).MROwner", bytes: 48)
        package.mrSeam = hex(fields["MRSeam"], "\(path).MRSeam", bytes: 48)
    }

    /// SGX and simulated packages: a measurement, or a signer with product and version.
    private mutating func enclaveFields(_ fields: [String: JSONValue], _ path: String, into package: inout Package) {
        let measurementField = package.kind == .sgx ? "UniqueID" : "Measurement"
        package.measurement = hex(fields[measurementField], "\(path).\(measurementField)", bytes: 32)
        package.signerID = hex(fields["SignerID"], "\(path).SignerID", bytes: package.kind == .sgx ? 32 : nil)
        package.productID = integer(fields["ProductID"], "\(path).ProductID", in: 0...Int(UInt16.max)).map(UInt16.init)
        package.securityVersion = integer(fields["SecurityVersion"], "\(path).SecurityVersion", in: 0...Int(UInt16.max)).map(UInt16.init)
        if fields[measurementField] == nil && fields["SignerID"] == nil {
            problem(path, "needs \(measurementField), or SignerID (with ProductID and SecurityVersion): otherwise any software would match")
        }
        if fields["SignerID"] != nil && (fields["ProductID"] == nil || fields["SecurityVersion"] == nil) {
            problem(path, "SignerID needs ProductID and SecurityVersion too")
        }
    }
}
