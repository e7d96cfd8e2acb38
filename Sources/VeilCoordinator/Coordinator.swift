import Crypto
import Foundation
import Logging
import Synchronization
import VeilAttestation
import VeilCore
import VeilManifest
import X509

/// The coordinator's state machine: holds the CA and the manifest, verifies activations and
/// provisions services.
///
/// Every state change is one ``transact(_:)``: read the current state, apply a change, append
/// its history entries, bump the generation, and write state and recovery data together with
/// a compare-and-swap on the store's revision, retrying on conflict. Several replicas can
/// therefore share one store, and quotas counted inside a transaction are exact across them.
/// Reads use the last state this replica saw (refreshed by the store's change feed).
///
/// Thread safety: the snapshot sits behind a mutex; this replica's transactions queue on an
/// async lock; verification, certificate issuance and rendering run outside both, so
/// activations proceed in parallel on all cores.
public final class Coordinator: Sendable {
    public typealias Phase = CoordinatorStatus.Phase

    /// What this replica last read or wrote.
    struct Snapshot: Sendable {
        var state: CoordinatorState
        var revision: Int64
        var recovery: [UInt8]?
        var manifest: Manifest?
    }

    /// Evidence this coordinator accepts from launchers besides what the manifest allows.
    public struct Verification: Sendable {
        /// Launchers' simulated evidence must be signed by this key (and the manifest must allow simulation).
        public var simulationKey: P256.Signing.PublicKey?
        /// Intel SGX/TDX quotes; nil refuses them.
        public var dcap: DCAPEvidenceVerifier?
        /// AMD CRLs per product for SEV-SNP evidence.
        public var snpCRLs: [AMDProduct: [UInt8]]
        /// VCEKs for SEV-SNP evidence sent without one (the host supplied no certificates).
        public var snpEndorsements: (any SNPEndorsementSource)?
        /// Intel collateral fetched from a PCS/PCCS (`--collateral`): `dcap` reads from it, and
        /// the coordinator's own attestation answer carries what it holds for its own quote.
        public var collateralCache: DCAPCollateralCache?
        /// AMD CRLs fetched from KDS for products with no CRL file in ``snpCRLs``.
        public var amdCRLCache: AMDCRLCache?

        public init(
            simulationKey: P256.Signing.PublicKey?, dcap: DCAPEvidenceVerifier? = nil, snpCRLs: [AMDProduct: [UInt8]] = [:],
            snpEndorsements: (any SNPEndorsementSource)? = nil, collateralCache: DCAPCollateralCache? = nil, amdCRLCache: AMDCRLCache? = nil
        ) {
            self.simulationKey = simulationKey
            self.dcap = dcap ?? collateralCache.map { DCAPEvidenceVerifier(source: $0) }
            self.snpCRLs = snpCRLs
            self.snpEndorsements = snpEndorsements
            self.collateralCache = collateralCache
            self.amdCRLCache = amdCRLCache
        }

        /// The AMD CRLs to check now: the files given, else what was fetched.
        var currentSNPCRLs: [AMDProduct: [UInt8]] {
            guard let amdCRLCache else { return snpCRLs }
            return snpCRLs.merging(amdCRLCache.held) { file, _ in file }
        }
    }

    /// What this replica says about itself in its status: Veil's version and its TEE identity.
    public struct About: Sendable {
        public var version = VeilVersion.current
        /// The replica's TEE identity (``TEEIdentity/description``), when known.
        public var identity: String?
        public init(identity: String? = nil) { self.identity = identity }
    }

    public let authority: CertificateAuthority
    let about: About
    let store: any StateStore
    let vault: StateVault
    let evidenceProvider: any EvidenceProvider
    let verification: Verification
    let logger: Logger
    let metrics: CoordinatorMetrics
    let nonces = NonceIssuer()
    private let snapshot: Mutex<Snapshot>
    private let transactions = AsyncLock()
    /// One generation-mark write at a time, so a waiting coroutine suspends instead of blocking a thread.
    private let markWrites = AsyncLock()
    let commits = ActivationCommits()
    /// Sessions and the token signer of the key-broker protocol (Coordinator+KBS).
    let kbs = KBSBroker()
    /// Activations of unlimited services: counted per replica, in memory (status only).
    let unlimitedActivations = Mutex<[String: Int]>([:])
    /// Activated services' last DCAP quotes, reviewed when Intel's documents change (TCBReview).
    let tcbWatch = TCBWatch()
    /// The coordinator's own evidence, asked once, to keep its collateral fetched.
    let ownEvidence = Mutex<Evidence?>(nil)

    private init(
        authority: CertificateAuthority, snapshot: Snapshot, store: any StateStore, vault: StateVault,
        evidenceProvider: any EvidenceProvider, verification: Verification, logger: Logger, metrics: CoordinatorMetrics, about: About
    ) {
        self.authority = authority
        self.about = about
        self.snapshot = Mutex(snapshot)
        self.store = store
        self.vault = vault
        self.evidenceProvider = evidenceProvider
        self.verification = verification
        self.logger = logger
        self.metrics = metrics
    }

    /// Why a coordinator could not open the stored state.
    public enum OpenError: Error, CustomStringConvertible {
        /// This replica cannot decrypt the stored state: it needs the key from a peer or from
        /// recovery key holders. `recovery` is the recovery data stored with the state.
        case needsStateKey(reason: VaultError, recovery: RecoveryData?)
        case refused(VaultError)
        case store(StateStoreError)

        public var description: String {
            switch self {
            case .needsStateKey(let reason, let recovery):
                return "\(reason); the state key must come from a peer replica" + (recovery.map { " or from \($0.threshold) of \($0.shares.count) recovery keys" } ?? "")
            case .refused(let reason): return "\(reason)"
            case .store(let error): return "\(error)"
            }
        }
    }

    /// Opens the stored state with this replica's state key, or creates a new coordinator
    /// (fresh CA, fresh state key) when the store is empty and this replica has never served one.
    public static func open(
        store: any StateStore, vault: StateVault, evidenceProvider: any EvidenceProvider, verification: Verification, logger: Logger,
        metrics: CoordinatorMetrics = .disabled, about: About = About()
    ) async throws -> Coordinator {
        let make = { (authority: CertificateAuthority, snapshot: Snapshot) in
            Coordinator(
                authority: authority, snapshot: snapshot, store: store, vault: vault, evidenceProvider: evidenceProvider,
                verification: verification, logger: logger, metrics: metrics, about: about)
        }
        while true {
            let stored: StoredState?
            do {
                stored = try await store.read()
            } catch {
                throw OpenError.store(error)
            }
            if let stored { return try await openStored(stored, vault: vault, logger: logger, make: make) }
            if vault.hasLocalTraces {
                throw OpenError.refused(.stateMissing(detail: vault.stateKey != nil ? "a sealed state key" : "generation \(vault.highestGeneration) seen"))
            }
            if let created = try await create(store: store, vault: vault, logger: logger, make: make) { return created }
            // Another replica created the state first: read theirs (its key comes from a peer).
        }
    }

    /// A coordinator over the stored state, rewritten in the current format when it is older.
    private static func openStored(
        _ stored: StoredState, vault: StateVault, logger: Logger, make: (CertificateAuthority, Snapshot) -> Coordinator
    ) async throws -> Coordinator {
        let opened: (state: CoordinatorState, recovery: [UInt8]?)
        do {
            opened = try vault.open(stored.bytes)
        } catch let error where error == .noStateKey || error == .wrongStateKey {
            var recovery: RecoveryData?
            if let bytes = StateEnvelope.header(stored.bytes)?.recovery {
                do {
                    recovery = try RecoveryData.parse(bytes)
                } catch {
                    logger.error("recovery data unusable: only a peer replica can provide the state key", metadata: ["reason": "\(error)"])
                }
            }
            throw OpenError.needsStateKey(reason: error, recovery: recovery)
        } catch {
            throw OpenError.refused(error)
        }
        let (authority, addedCA) = try opened.state.authority()
        let coordinator = make(authority, try Snapshot(stored: stored, opened: opened))
        try vault.note(generation: opened.state.generation)
        if addedCA || StateEnvelope.isLegacy(stored.bytes) {
            // Rewrite in the current format, with the coordinator TLS CA the state lacked.
            try await coordinator.transact { state, _ in
                state.coordinatorCAKey = Array(authority.coordinatorCAKey.rawRepresentation)
                state.coordinatorCACertificate = authority.coordinatorCADER
                state.format = CoordinatorState.currentFormat
                return ((), [])
            }
        }
        return coordinator
    }

    /// A new coordinator (fresh CA, fresh state key) written to the empty store; `nil` when
    /// another replica wrote its state first.
    private static func create(
        store: any StateStore, vault: StateVault, logger: Logger, make: (CertificateAuthority, Snapshot) -> Coordinator
    ) async throws -> Coordinator? {
        let authority = try CertificateAuthority.generate()
        var state = CoordinatorState(authority: authority)
        state.generation = 1
        try vault.adopt(stateKey: SymmetricKey(size: .bits256))
        let bytes = try vault.seal(state, recovery: nil)
        do {
            let revision = try await store.write(bytes, expecting: nil)
            try vault.note(generation: 1)
            logger.info("new coordinator state created", metadata: ["store": "\(store.description)"])
            return make(authority, Snapshot(state: state, revision: revision, recovery: nil, manifest: nil))
        } catch StateStoreError.conflict {
            vault.reset()
            return nil
        } catch let error as StateStoreError {
            vault.reset()
            throw OpenError.store(error)
        }
    }

    // MARK: - Reading

    var current: Snapshot { snapshot.withLock { $0 } }
    public var phase: Phase { current.manifest == nil ? .awaitingManifest : .accepting }
    public var manifest: Manifest? { current.manifest }
    public var generation: UInt64 { current.state.generation }
    public var isSimulated: Bool { evidenceProvider.isSimulated }
    public var rootCertificatePEM: String { PEM.encode(authority.rootDER, label: "CERTIFICATE") }
    public var chainPEM: String { PEM.encode(authority.intermediateDER, label: "CERTIFICATE") + rootCertificatePEM }
    /// The history of changes, oldest first.
    public var log: [LogEntry] { current.state.log ?? [] }

    public func status() -> CoordinatorStatus {
        let snapshot = current
        var activations = unlimitedActivations.withLock { $0 }
        for (service, count) in snapshot.state.activations { activations[service] = count }
        var status = CoordinatorStatus(
            phase: snapshot.manifest == nil ? .awaitingManifest : .accepting, manifestDigest: snapshot.manifest?.digest,
            simulated: isSimulated, activations: activations)
        status.generation = snapshot.state.generation
        status.historyLength = snapshot.state.log?.count ?? 0
        status.version = about.version
        status.identity = about.identity
        let warnings = tcbWatch.warnings
        status.tcbWarnings = warnings.isEmpty ? nil : warnings
        return status
    }

    // MARK: - The transaction primitive

    /// Applies `change` to the current state as one atomic, retried step and returns its
    /// result. `change` may run more than once (after a concurrent write elsewhere) and must
    /// only compute: it gets the state to change and the snapshot it came from, returns a
    /// result and the history events to append. A change that alters nothing and records no
    /// event writes nothing.
    @discardableResult
    func transact<T: Sendable>(
        _ change: (inout CoordinatorState, Snapshot) throws(CoordinatorError) -> (T, [HistoryEvent])
    ) async throws(CoordinatorError) -> T {
        let result = try await transactions.run { () async throws(CoordinatorError) -> T in
            for attempt in 0..<Self.maximumAttempts {
                let before = current
                var state = before.state
                let (result, events) = try change(&state, before)
                if events.isEmpty && state == before.state { return result }
                var log = state.log ?? []
                for event in events {
                    do {
                        try AuditLog.append(to: &log, event: event.event, user: event.user, detail: event.detail, key: authority.rootKey)
                    } catch {
                        throw .storage("cannot sign the history entry: \(error)")
                    }
                }
                state.log = log
                state.generation = before.state.generation + 1
                let manifest = state.manifest == before.state.manifest ? before.manifest : try Self.parseStored(state.manifest)
                let recovery = state.manifest == before.state.manifest ? before.recovery : try recoveryData(for: manifest)
                let bytes = try vault.seal(state, recovery: recovery)
                do {
                    let revision = try await store.write(bytes, expecting: before.revision)
                    install(Snapshot(state: state, revision: revision, recovery: recovery, manifest: manifest))
                    vault.raise(to: state.generation)
                    return result
                } catch StateStoreError.conflict {
                    try await refresh()
                    if attempt > 2 { try? await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 * attempt)))) }
                } catch StateStoreError.unavailable(let why) {
                    throw .storeUnavailable(why)
                } catch {
                    throw .storage("\(error)")
                }
            }
            throw .storeUnavailable("the state changed concurrently \(Self.maximumAttempts) times in a row; retry")
        }
        await writeGenerationMark()
        return result
    }

    /// Writes the generation mark before a transaction's caller hears of it, outside the
    /// transaction lock: the next transaction's store write overlaps this one's mark write,
    /// and transactions that finish while a mark is written share the next one.
    private func writeGenerationMark() async {
        await markWrites.run {
            do {
                try vault.writeMark()
            } catch {
                logger.error("cannot record the generation locally (rollback protection weakened)", metadata: ["error": "\(error)"])
            }
        }
    }

    static let maximumAttempts = 64

    /// Reads the store and takes a newer state than the one held.
    func refresh() async throws(CoordinatorError) {
        let stored: StoredState?
        do {
            stored = try await store.read()
        } catch StateStoreError.unavailable(let why) {
            throw .storeUnavailable(why)
        } catch {
            throw .storage("\(error)")
        }
        guard let stored else { throw .stateUnavailable(VaultError.stateMissing(detail: "generation \(generation) held").description) }
        try adopt(stored)
    }

    /// Takes `stored` when it is newer than the snapshot (a change made elsewhere). Runs under
    /// the transaction lock (from a transaction's retry, or from ``followChanges()``).
    func adopt(_ stored: StoredState) throws(CoordinatorError) {
        guard stored.revision > current.revision else { return }
        let opened: (state: CoordinatorState, recovery: [UInt8]?)
        do {
            opened = try vault.open(stored.bytes)
        } catch {
            logger.error("refusing the stored state", metadata: ["reason": "\(error)"])
            throw .stateUnavailable(error.description)
        }
        let next = try Snapshot(stored: stored, opened: opened, previous: current)
        try? vault.note(generation: opened.state.generation)
        install(next)
    }

    private func install(_ next: Snapshot) {
        snapshot.withLock { current in
            if next.revision > current.revision { current = next }
        }
    }

    /// Follows the store's change feed until cancelled, so reads on this replica see changes
    /// made through others. Each change is taken between this replica's transactions: a late
    /// event older than a write of ours is then recognised as stale, not as a rollback.
    public func followChanges() async {
        for await stored in store.changes(after: current.revision) {
            do {
                try await transactions.run { () throws(CoordinatorError) in try adopt(stored) }
            } catch {
                logger.error("change from the store not taken", metadata: ["reason": "\(error)"])
            }
        }
    }

    static func parseStored(_ raw: [UInt8]?) throws(CoordinatorError) -> Manifest? {
        guard let raw else { return nil }
        do {
            return try Manifest.parse(raw)
        } catch {
            throw .storage("the stored manifest no longer validates: \(error)")
        }
    }

    /// The recovery data for `manifest`'s recovery keys (nil when it has none).
    func recoveryData(for manifest: Manifest?) throws(CoordinatorError) -> [UInt8]? {
        guard let manifest, let stateKey = vault.stateKey else { return nil }
        do {
            return try RecoveryData.make(stateKey: stateKey, manifest: manifest).map { canonicalJSONBytes($0) }
        } catch {
            throw .storage("cannot split the state key for the recovery keys: \(error)")
        }
    }

    /// Records in the history that `recovery` restored this replica's state key (which
    /// recovery keys helped), once the coordinator runs again.
    public func recordRecovery(_ recovery: RecoveryCoordinator) async throws(CoordinatorError) {
        guard recovery.isRecovered, let note = recovery.note else { return }
        try await transact { _, _ in ((), [note]) }
    }

    /// Records in the history that `replica` moved its SNP sealing pin.
    public func record(_ move: SealingPinMove, replica: String) async throws(CoordinatorError) {
        try await transact { _, _ in
            ((), [HistoryEvent("sealingTCBAdvanced", detail: [
                "replica": replica, "from": move.from.map(SealingPinMove.hex) ?? "unpinned", "to": SealingPinMove.hex(move.to), "reason": move.reason.rawValue,
            ])])
        }
    }

    // MARK: - Manifest

    /// Sets the manifest once. Setting the identical bytes again is a no-op; a different
    /// manifest is refused. On any error the state is unchanged.
    /// - Parameter userDefinedSecrets: initial values of the manifest's `UserDefined` secrets.
    @discardableResult
    public func setManifest(_ bytes: [UInt8], userDefinedSecrets: [String: [UInt8]] = [:]) async throws(CoordinatorError) -> [UInt8] {
        let manifest: Manifest
        do {
            manifest = try Manifest.parse(bytes)
        } catch {
            throw .invalidManifest(error)
        }
        for (name, value) in userDefinedSecrets {
            try Self.checkUserDefined(manifest.secrets[name], name: name, value: value)
        }
        if let current = self.manifest {
            guard current.digest == manifest.digest, userDefinedSecrets.isEmpty else { throw .manifestAlreadySet(updatable: current.updatable) }
            return current.digest
        }
        // Generated before the transaction: RSA keys take a while, and a change may run twice.
        var secrets: [String: SecretValue] = [:]
        do {
            for (name, spec) in manifest.secrets {
                secrets[name] = try SecretGenerator.generate(spec, authority: authority)
            }
            for (name, value) in userDefinedSecrets { secrets[name]?.bytes = value }
        } catch {
            throw .storage("generating secrets: \(error)")
        }
        try await transact { state, _ throws(CoordinatorError) in
            if let existing = state.manifest {
                guard existing == bytes, userDefinedSecrets.isEmpty else { throw .manifestAlreadySet(updatable: (try? Manifest.parse(existing))?.updatable ?? false) }
                return ((), [])
            }
            state.manifest = bytes
            state.secrets = secrets
            state.activations = [:]
            return ((), [HistoryEvent("manifestSet", detail: [
                "digest": Hex.encode(manifest.digest), "userDefinedSecrets": userDefinedSecrets.keys.sorted().joined(separator: ","),
            ])])
        }
        logger.info(
            "manifest set",
            metadata: ["digest": "\(Hex.encode(manifest.digest))", "services": "\(manifest.services.keys.sorted())"]
                .merging(manifest.config.allowSimulation ? ["warning": "\(simulationWarning)"] : [:]) { a, _ in a })
        for warning in manifest.coverageWarnings { logger.warning("\(warning)") }
        return manifest.digest
    }

    // MARK: - Attestation

    /// The coordinator's own evidence binding its root certificate, the head of its history
    /// and `nonce`: report data `SHA-256(root DER ‖ log head ‖ nonce)`.
    public func evidence(nonce: [UInt8]) throws(CoordinatorError) -> CoordinatorEvidence {
        guard (1...64).contains(nonce.count) else { throw .badRequest("nonce must be 1 to 64 bytes of hex") }
        // Only the newest entry is needed: no copy of the whole history per request.
        let head = snapshot.withLock { $0.state.log?.last?.hash } ?? AuditLog.emptyHead
        do {
            let evidence = try evidenceProvider.evidence(reportData: ReportData.binding(authority.rootDER + head, nonce: nonce))
            return CoordinatorEvidence(
                evidence: evidence, rootCertificate: authority.rootDER, logHead: head, simulated: isSimulated, collateral: heldCollateral(for: evidence))
        } catch {
            throw .storage("cannot produce evidence: \(error)")
        }
    }

    // MARK: - Activation

    /// How long an activation nonce stays valid.
    public static var nonceLifetime: TimeInterval { NonceIssuer.lifetime }

    /// Issues a fresh activation nonce (stateless: see ``NonceIssuer``).
    public func issueNonce(now: Date = Date()) -> [UInt8] { nonces.issue(now: now) }

    /// What `service`'s activation would provision under the current manifest (its files and
    /// whether they may go to disk), nil when the manifest does not list it (or none is set).
    public func provisioning(of service: String) -> Manifest.Service? {
        manifest?.services[service]
    }
}

extension Coordinator.Snapshot {
    init(stored: StoredState, opened: (state: CoordinatorState, recovery: [UInt8]?), previous: Coordinator.Snapshot? = nil) throws(CoordinatorError) {
        state = opened.state
        revision = stored.revision
        recovery = opened.recovery
        if let previous, previous.state.manifest == opened.state.manifest {
            manifest = previous.manifest
        } else {
            manifest = try Coordinator.parseStored(opened.state.manifest)
        }
    }
}

func canonicalJSONBytes(_ value: some Encodable) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    // The recovery data holds strings and integers only.
    return Array(try! encoder.encode(value))
}
