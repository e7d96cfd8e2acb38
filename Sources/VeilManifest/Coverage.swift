import VeilAttestation

extension Manifest {
    /// Packages whose pins do not reach the guest's software: a TD package that pins MRTD
    /// alone (MRTD covers only the TD firmware, so any kernel and root filesystem booted from
    /// the same TDVF would match). Valid, but worth a warning: `veil manifest validate` prints them.
    /// An snp package with `"MinimumTCB": "any"` accepts every firmware, vulnerable ones
    /// included: allowed when stated, and said here.
    public var coverageWarnings: [String] { identityWarnings + tcbWarnings }

    /// SGX/TDX packages that accept platforms with known, unpatched vulnerabilities.
    var tcbWarnings: [String] {
        packages.sorted { $0.key < $1.key }.compactMap { name, package in
            let outdated = package.tcbAcceptance(defaults: config.tcb).statuses.filter { $0 == .outOfDate || $0 == .outOfDateConfigurationNeeded }
            guard package.kind == .sgx || package.kind == .tdx, !outdated.isEmpty else { return nil }
            return "package '\(name)' (\(package.kind.rawValue)) accepts \(outdated.sorted().map(\.rawValue).joined(separator: ", ")): platforms "
                + "behind Intel's latest TCB recovery, with known vulnerabilities unpatched, match it"
        }
    }

    var identityWarnings: [String] {
        packages.sorted { $0.key < $1.key }.compactMap { name, package in
            switch package {
            case .snp(let guest) where guest.requirements.minimumTCB == .any:
                return "package '\(name)' (snp) accepts any firmware TCB (MinimumTCB \"any\"): guests on firmware with known "
                    + "vulnerabilities match it; state the lowest TCB to accept"
            case .tdx(let td) where td.rtmrs.allSatisfy({ $0 == nil }) && td.mrConfigID == nil: break
            default: return nil
            }
            return "package '\(name)' (tdx) pins no RTMR and no MRConfigID: MRTD covers only the TD firmware, so any kernel, "
                + "command line, initrd and root filesystem booted from the same firmware matches it; pin RTMR1 and RTMR2 "
                + "(kernel, command line, initrd) or MRConfigID"
        }
    }
}
