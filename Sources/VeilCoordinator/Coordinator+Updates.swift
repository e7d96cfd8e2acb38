import Crypto
import Foundation
import VeilAttestation
import VeilManifest

extension Coordinator {
    /// The pending manifest update and who acknowledged it.
    public func updateStatus() -> API.UpdateStatus {
        state.withLock { mutable in
            let manifest = mutable.manifest
            return API.UpdateStatus(
                pending: mutable.sealed.pendingUpdate.map { Hex.encode(SHA256.hash(data: $0.manifest)) },
                acknowledgedBy: mutable.sealed.pendingUpdate?.acknowledgedBy ?? [],
                required: manifest.map(Self.requiredAcknowledgements) ?? 0, applied: false)
        }
    }

    /// Users who must acknowledge a full update under `manifest` (the current one: a proposal
    /// cannot lower its own threshold).
    static func requiredAcknowledgements(_ manifest: Manifest) -> Int {
        manifest.config.updateAcknowledgements ?? manifest.users.values.filter { manifest.allows($0, .updateManifest, on: nil) }.count
    }

    /// Raises packages' `SecurityVersion`s: `{"Packages": {NAME: {"SecurityVersion": N}}}`, by a
    /// user with `UpdatePackage` on each package. Applies at once; activations reporting a lower
    /// security version are refused from then on.
    @discardableResult
    public func updatePackages(_ body: [UInt8], by certificateDER: [UInt8]?) throws(CoordinatorError) -> [UInt8] {
        let current = try authenticate(certificateDER).manifest
        guard case .object(let root)? = try? JSONValue.parse(body), root.count == 1, case .object(let packages)? = root["Packages"], !packages.isEmpty
        else { throw .invalidUpdate("a package update is {\"Packages\": {NAME: {\"SecurityVersion\": N}}}") }
        var versions: [String: UInt16] = [:]
        var user = ""
        for (name, value) in packages.sorted(by: { $0.key < $1.key }) {
            guard case .object(let fields) = value, fields.count == 1, case .number(let number)? = fields["SecurityVersion"],
                number >= 0, number <= Double(UInt16.max), number == number.rounded()
            else { throw .invalidUpdate("Packages.\(name) must be {\"SecurityVersion\": 0...65535} and nothing else") }
            user = try authorize(certificateDER, .updatePackage, on: name)
            guard let package = current.packages[name] else { throw .invalidUpdate("the manifest has no package '\(name)'") }
            let proposed = UInt16(number), existing = package.securityVersion ?? 0
            if proposed < existing { throw .securityVersionLowered(package: name, current: existing, proposed: proposed) }
            if proposed == existing { throw .invalidUpdate("package '\(name)' already has SecurityVersion \(existing)") }
            versions[name] = proposed
        }
        // The stored manifest is rewritten with the new versions, so `manifest get` shows them.
        guard case .object(var document)? = try? JSONValue.parse(current.raw), case .object(var all)? = document["Packages"] else {
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
        let updated: Manifest
        do {
            updated = try Manifest.parse(Array(raw))
        } catch {
            throw .invalidManifest(error)
        }
        try commit(updated, event: "packageUpdated", user: user, detail: [
            "packages": versions.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
        ])
        return updated.digest
    }

    /// Proposes a new manifest (user with `UpdateManifest`); it applies once the required
    /// number of such users acknowledged it, the proposer counting as the first.
    public func proposeUpdate(_ bytes: [UInt8], by certificateDER: [UInt8]?) throws(CoordinatorError) -> API.UpdateStatus {
        let user = try authorize(certificateDER, .updateManifest, on: nil)
        guard let current = manifest else { throw .noManifest }
        let proposed = try Self.checkUpdate(bytes, against: current)
        try state.withLock { mutable throws(CoordinatorError) in
            var sealed = mutable.sealed
            sealed.pendingUpdate = PendingUpdate(manifest: bytes, acknowledgedBy: [user])
            try persist(&sealed, logging: "updateProposed", user: user, detail: ["digest": Hex.encode(proposed.digest)])
            mutable.sealed = sealed
        }
        return try applyIfAcknowledged()
    }

    /// Acknowledges the pending update; `bytes` must be exactly the proposed manifest.
    public func acknowledgeUpdate(_ bytes: [UInt8], by certificateDER: [UInt8]?) throws(CoordinatorError) -> API.UpdateStatus {
        let user = try authorize(certificateDER, .updateManifest, on: nil)
        try state.withLock { mutable throws(CoordinatorError) in
            guard let pending = mutable.sealed.pendingUpdate else { throw .noPendingUpdate }
            guard pending.manifest == bytes else { throw .updateMismatch(pending: Hex.encode(SHA256.hash(data: pending.manifest))) }
            guard !pending.acknowledgedBy.contains(user) else { return }
            var sealed = mutable.sealed
            sealed.pendingUpdate?.acknowledgedBy.append(user)
            try persist(&sealed, logging: "updateAcknowledged", user: user, detail: ["digest": Hex.encode(SHA256.hash(data: bytes))])
            mutable.sealed = sealed
        }
        return try applyIfAcknowledged()
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

    private func applyIfAcknowledged() throws(CoordinatorError) -> API.UpdateStatus {
        var status = updateStatus()
        guard let pending = state.withLock({ $0.sealed.pendingUpdate }), status.acknowledgedBy.count >= status.required,
            let current = manifest
        else { return status }
        // Re-checked: a package update may have raised a version since the proposal.
        let proposed = try Self.checkUpdate(pending.manifest, against: current)
        // Secrets whose definition is unchanged keep their values; new or changed ones
        // (certificates included) are generated afresh.
        let existing = state.withLock { $0.sealed.secrets }
        var secrets: [String: SecretValue] = [:]
        do {
            for (name, spec) in proposed.secrets {
                secrets[name] = current.secrets[name] == spec ? existing[name] ?? SecretValue() : try SecretGenerator.generate(spec, authority: authority)
            }
        } catch {
            throw .storage("generating secrets: \(error)")
        }
        try commit(proposed, event: "manifestUpdated", user: nil, detail: [
            "digest": Hex.encode(proposed.digest), "previous": Hex.encode(current.digest),
            "acknowledgedBy": pending.acknowledgedBy.joined(separator: ","),
        ], secrets: secrets)
        status.pending = nil
        status.applied = true
        return status
    }

    /// Installs `manifest` (and `secrets`, when given), clears any pending update, logs `event`.
    private func commit(_ manifest: Manifest, event: String, user: String?, detail: [String: String], secrets: [String: SecretValue]? = nil) throws(CoordinatorError) {
        try state.withLock { mutable throws(CoordinatorError) in
            var sealed = mutable.sealed
            sealed.manifest = manifest.raw
            if let secrets { sealed.secrets = secrets }
            sealed.pendingUpdate = nil
            sealed.activations = sealed.activations.filter { manifest.services[$0.key] != nil }
            try persist(&sealed, logging: event, user: user, detail: detail)
            mutable.sealed = sealed
            mutable.manifest = manifest
        }
        try saveRecoveryData(for: manifest)
        logger.info("manifest updated", metadata: ["event": "\(event)", "digest": "\(Hex.encode(manifest.digest))", "user": "\(user ?? "-")"])
    }
}
