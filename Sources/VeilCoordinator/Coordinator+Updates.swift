import Crypto
import Foundation
import VeilCore
import VeilManifest

extension Coordinator {
    /// The pending manifest update and who acknowledged it.
    public func updateStatus() -> UpdateProgress {
        Self.updateStatus(current.state, manifest: current.manifest)
    }

    static func updateStatus(_ state: CoordinatorState, manifest: Manifest?) -> UpdateProgress {
        UpdateProgress(
            pendingDigest: state.pendingUpdate.map { Array(SHA256.hash(data: $0.manifest)) },
            acknowledgedBy: state.pendingUpdate?.acknowledgedBy ?? [],
            required: manifest.map(requiredAcknowledgements) ?? 0, applied: false)
    }

    /// Users (with `UpdateManifest`) who must acknowledge a full update under `manifest` (the
    /// current one: a proposal cannot lower its own threshold).
    static func requiredAcknowledgements(_ manifest: Manifest) -> Int {
        manifest.config.updateAcknowledgements ?? manifest.users.values.filter { manifest.allows($0, .updateManifest, on: nil) }.count
    }

    /// Raises packages' `SecurityVersion`s: `{"Packages": {NAME: {"SecurityVersion": N}}}`, by a
    /// user with `UpdatePackage` on each package. Applies at once; activations reporting a lower
    /// security version are refused from then on. A pending full update stays pending (it is
    /// checked again against the raised versions when it applies).
    @discardableResult
    public func updatePackages(_ body: [UInt8], by user: AuthenticatedUser) async throws(CoordinatorError) -> [UInt8] {
        guard case .object(let root)? = try? JSONValue.parse(body), root.count == 1, case .object(let packages)? = root["Packages"], !packages.isEmpty
        else { throw .invalidUpdate("a package update is {\"Packages\": {NAME: {\"SecurityVersion\": N}}}") }
        var versions: [String: UInt16] = [:]
        for (name, value) in packages.sorted(by: { $0.key < $1.key }) {
            guard case .object(let fields) = value, fields.count == 1, case .number(let number)? = fields["SecurityVersion"],
                number >= 0, number <= Double(UInt16.max), number == number.rounded()
            else { throw .invalidUpdate("Packages.\(name) must be {\"SecurityVersion\": 0...65535} and nothing else") }
            versions[name] = UInt16(number)
        }
        return try await transact { state, current throws(CoordinatorError) in
            guard let manifest = current.manifest else { throw .noManifest }
            for (name, proposed) in versions.sorted(by: { $0.key < $1.key }) {
                try authorize(user, .updatePackage, on: name, in: manifest)
                guard let package = manifest.packages[name] else { throw .invalidUpdate("the manifest has no package '\(name)'") }
                guard package.kind == .sgx || package.kind == .simulated else {
                    throw .invalidUpdate(
                        "package '\(name)' is \(package.kind.rawValue): only sgx and simulated packages have a SecurityVersion (a TD or an SEV-SNP guest is pinned by its measurements; change those with veil manifest update)")
                }
                let existing = package.securityVersion ?? 0
                if proposed < existing { throw .securityVersionLowered(package: name, current: existing, proposed: proposed) }
                if proposed == existing { throw .invalidUpdate("package '\(name)' already has SecurityVersion \(existing)") }
            }
            let updated = try Self.withSecurityVersions(versions, in: manifest)
            state.manifest = updated.raw
            state.activations = state.activations.filter { updated.services[$0.key] != nil }
            return (updated.digest, [HistoryEvent("packageUpdated", user: user.name, detail: [
                "packages": versions.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
            ])])
        }
    }

    /// `manifest` with the packages' security versions raised, re-serialized so `manifest get`
    /// shows them.
    static func withSecurityVersions(_ versions: [String: UInt16], in manifest: Manifest) throws(CoordinatorError) -> Manifest {
        guard case .object(var document)? = try? JSONValue.parse(manifest.raw), case .object(var all)? = document["Packages"] else {
            throw .storage("the current manifest no longer parses")
        }
        for (name, version) in versions {
            guard case .object(var fields)? = all[name] else { continue }
            fields["SecurityVersion"] = .number(Double(version))
            all[name] = .object(fields)
        }
        document["Packages"] = .object(all)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        guard let raw = try? encoder.encode(JSONValue.object(document)) else { throw .storage("cannot encode the updated manifest") }
        do {
            return try Manifest.parse(Array(raw))
        } catch {
            throw .invalidManifest(error)
        }
    }

    /// Proposes a new manifest (user with `UpdateManifest`); it applies once the required
    /// number of such users acknowledged it, the proposer counting as the first.
    public func proposeUpdate(_ bytes: [UInt8], by user: AuthenticatedUser) async throws(CoordinatorError) -> UpdateProgress {
        try await acknowledgementStep(bytes, by: user, proposing: true)
    }

    /// Acknowledges the pending update; `bytes` must be exactly the proposed manifest.
    public func acknowledgeUpdate(_ bytes: [UInt8], by user: AuthenticatedUser) async throws(CoordinatorError) -> UpdateProgress {
        try await acknowledgementStep(bytes, by: user, proposing: false)
    }

    /// One transaction for a proposal or acknowledgement and, when it completes the required
    /// acknowledgements, the update itself: two concurrent acknowledgements cannot both apply it.
    /// Secrets the update adds or changes are generated beforehand (outside the transaction)
    /// against the manifest the step saw; if that manifest changed meanwhile, the step starts over.
    private func acknowledgementStep(_ bytes: [UInt8], by user: AuthenticatedUser, proposing: Bool) async throws(CoordinatorError) -> UpdateProgress {
        for _ in 0..<Self.maximumAttempts {
            guard let base = current.manifest else { throw .noManifest }
            let proposed = try Self.checkUpdate(bytes, against: base)
            // Key generation (slow for RSA) only when this step is expected to complete the update.
            let acknowledged = current.state.pendingUpdate.map { $0.manifest == bytes ? $0.acknowledgedBy : [] } ?? []
            let count = proposing ? 1 : acknowledged.count + (acknowledged.contains(user.name) ? 0 : 1)
            let generated = count >= Self.requiredAcknowledgements(base) ? try generatedSecrets(for: proposed, replacing: base) : nil
            do {
                return try await transact { state, current throws(CoordinatorError) in
                    guard let manifest = current.manifest else { throw .noManifest }
                    try authorize(user, .updateManifest, on: nil, in: manifest)
                    var events: [HistoryEvent] = []
                    if proposing {
                        _ = try Self.checkUpdate(bytes, against: manifest)
                        state.pendingUpdate = CoordinatorState.PendingUpdate(manifest: bytes, acknowledgedBy: [user.name])
                        events.append(HistoryEvent("updateProposed", user: user.name, detail: ["digest": Hex.encode(proposed.digest)]))
                    } else {
                        guard let pending = state.pendingUpdate else { throw .noPendingUpdate }
                        guard pending.manifest == bytes else { throw .updateMismatch(pending: Hex.encode(SHA256.hash(data: pending.manifest))) }
                        if !pending.acknowledgedBy.contains(user.name) {
                            state.pendingUpdate?.acknowledgedBy.append(user.name)
                            events.append(HistoryEvent("updateAcknowledged", user: user.name, detail: ["digest": Hex.encode(SHA256.hash(data: bytes))]))
                        }
                    }
                    var status = Self.updateStatus(state, manifest: manifest)
                    guard let pending = state.pendingUpdate, pending.acknowledgedBy.count >= status.required else { return (status, events) }
                    // Complete: apply now, in this same transaction.
                    guard manifest.digest == base.digest, let generated else { throw .manifestChanged }
                    // Checked again: a package update may have raised a version since the proposal.
                    let next = try Self.checkUpdate(pending.manifest, against: manifest)
                    state.manifest = next.raw
                    var secrets: [String: SecretValue] = [:]
                    for (name, spec) in next.secrets {
                        secrets[name] = manifest.secrets[name] == spec ? state.secrets[name] ?? SecretValue() : generated[name] ?? SecretValue()
                    }
                    state.secrets = secrets
                    state.pendingUpdate = nil
                    state.activations = state.activations.filter { next.services[$0.key] != nil }
                    events.append(HistoryEvent("manifestUpdated", detail: [
                        "digest": Hex.encode(next.digest), "previous": Hex.encode(manifest.digest),
                        "acknowledgedBy": pending.acknowledgedBy.joined(separator: ","),
                    ]))
                    status.pendingDigest = nil
                    status.applied = true
                    return (status, events)
                }
            } catch .manifestChanged {
                continue
            }
        }
        throw .storeUnavailable("the manifest kept changing during the update; retry")
    }

    /// Values for the secrets `proposed` adds or defines differently from `base` (certificates
    /// included); unchanged definitions keep their values in the transaction.
    private func generatedSecrets(for proposed: Manifest, replacing base: Manifest) throws(CoordinatorError) -> [String: SecretValue] {
        var secrets: [String: SecretValue] = [:]
        do {
            for (name, spec) in proposed.secrets where base.secrets[name] != spec {
                secrets[name] = try SecretGenerator.generate(spec, authority: authority)
            }
        } catch {
            throw .storage("generating secrets: \(error)")
        }
        return secrets
    }

    /// A proposal must be a valid manifest that lowers no package's security version.
    static func checkUpdate(_ bytes: [UInt8], against current: Manifest) throws(CoordinatorError) -> Manifest {
        let proposed: Manifest
        do {
            proposed = try Manifest.parse(bytes)
        } catch {
            throw .invalidManifest(error)
        }
        guard proposed.digest != current.digest else { throw .invalidUpdate("the proposed manifest is the current one") }
        for (name, package) in current.packages.sorted(by: { $0.key < $1.key }) {
            guard let existing = package.securityVersion, let next = proposed.packages[name] else { continue }
            let version = next.securityVersion ?? 0
            if version < existing { throw .securityVersionLowered(package: name, current: existing, proposed: version) }
        }
        return proposed
    }
}
