/// Every environment variable Veil reads, in one place: the CLI, the launcher, the runtime and
/// the Kubernetes renderer name them through these constants, so no two can drift apart.
public enum VeilEnvironment {
    /// The coordinator's address (`HOST:PORT`, several separated by commas).
    public static let coordinator = "VEIL_COORDINATOR"
    /// The manifest service a launcher activates as.
    public static let service = "VEIL_SERVICE"
    /// The TEE to attest with (`auto`, `sgx`, `snp`, `tdx`, `simulated`).
    public static let tee = "VEIL_TEE"
    /// The coordinator root certificate to pin (PEM file).
    public static let rootCA = "VEIL_ROOT_CA"
    /// The simulation platform key (development only: no confidentiality).
    public static let simulationKey = "VEIL_SIMULATION_KEY"
    public static let tsmRoot = "VEIL_TSM_ROOT"
    public static let gramineRoot = "VEIL_GRAMINE_ROOT"
    public static let gramineKeys = "VEIL_GRAMINE_KEYS"
    public static let sevGuest = "VEIL_SEV_GUEST"
    /// The Confidential Containers guest API (`--tee coco`; default http://127.0.0.1:8006).
    public static let guestAPI = "VEIL_GUEST_API"
    /// `1`: the launcher prints how long each of its steps took.
    public static let launchTrace = "VEIL_LAUNCH_TRACE"
    /// `1`: the launcher detaches the TEE's report interface before it execs the app.
    public static let dropTEEAccess = "VEIL_DROP_TEE_ACCESS"
    /// Where the CLI keeps pinned roots and history marks (default `~/.config/veil`).
    public static let configDirectory = "VEIL_CONFIG_DIR"
    public static let userCertificate = "VEIL_USER_CERT"
    public static let userKey = "VEIL_USER_KEY"
    /// `zlib` selects zlib over ISA-L for decompression (benchmarks, comparisons).
    public static let gunzip = "VEIL_GUNZIP"
    public static let fuzzTarget = "VEIL_FUZZ_TARGET"
    /// The shared attestation test vectors (fuzzing seeds).
    public static let testdata = "VEIL_TESTDATA"

    /// What configures the launcher and is removed before the app starts.
    public static let launcherOwned = [simulationKey, tee, coordinator, service, rootCA, tsmRoot, dropTEEAccess, gramineRoot, launchTrace, guestAPI]
}

/// Default listen and connect addresses: the coordinator's client API (users, `veil attest`)
/// and its mesh API (launchers).
public enum VeilDefaults {
    public static let clientPort = 4433
    public static let meshPort = 2001
    public static let clientAddress = "127.0.0.1:\(clientPort)"
    public static let meshAddress = "127.0.0.1:\(meshPort)"
}
