import VeilAttestation
import VeilCore
import VeilManifest

/// What the injector adds to pods, as configured for one deployment (`veil injector` flags).
public struct InjectorPolicy: Sendable {
    /// The TEE pods get when they do not ask (`veil.dev/tee`).
    public var defaultTEE: PodTEE
    /// Mesh API of the coordinator, as pods reach it (`HOST:PORT`, replicas comma-separated).
    public var coordinator: String
    /// ConfigMap holding the attested root as `root.pem`.
    public var rootConfigMap = "veil-root"
    /// Secret holding the simulation platform key as `key.pem` (simulated pods only).
    public var simulationKeySecret = "veil-simulation-key"
    /// Namespaces whose pods may run simulated (no confidentiality). Empty: none.
    public var simulationNamespaces: Set<String> = []
    /// Image of the init container that copies the launcher (`veil-launcher install`).
    public var launcherImage: String
    /// The dynamic loader shipped beside the launcher in that image (its entrypoint runs
    /// through it so nothing of the app image is used); nil for a launcher that runs alone.
    public var launcherLoader: String? = "ld-linux-x86-64.so.2"
    /// `confidential-vm`: the runtime class of confidential VM pods.
    public var runtimeClass = "kata-cc-isolation"
    /// `sgx`: EPC each container asks for (Intel's SGX device plugin resource).
    public var sgxEPC = "64Mi"

    public init(defaultTEE: PodTEE, coordinator: String, launcherImage: String) {
        self.defaultTEE = defaultTEE
        self.coordinator = coordinator
        self.launcherImage = launcherImage
    }
}

/// The TEE a pod runs in.
public enum PodTEE: String, Sendable, CaseIterable {
    /// Development only: the launcher signs evidence with the simulation key. No confidentiality.
    case simulated
    /// Intel SGX through Gramine, EPC from Intel's device plugin.
    case sgx
    /// A confidential VM pod (Kata with Confidential Containers, SEV-SNP or TDX) whose evidence
    /// comes from the guest API inside the VM: no host path into the node.
    case confidentialVM = "confidential-vm"

    /// The launcher's `VEIL_TEE`.
    var launcherTEE: String {
        switch self {
        case .simulated: return "simulated"
        case .sgx: return "sgx-gramine"
        case .confidentialVM: return "coco"
        }
    }
}

/// The labels and annotations pods use to ask for Veil.
public enum PodKeys {
    /// Label: the manifest service the pod's containers activate as. Only labelled pods change.
    public static let service = "veil.dev/service"
    /// Annotation: `simulated`, `sgx` or `confidential-vm` instead of the injector's default.
    public static let tee = "veil.dev/tee"
    /// Annotation: comma-separated containers to wrap (default: all).
    public static let containers = "veil.dev/containers"
    /// Annotation: comma-separated absolute paths to back with memory (where the manifest's
    /// files go when they are not under `/run/veil`).
    public static let memoryPaths = "veil.dev/memory-paths"
}

/// The injector's answer for one pod.
public enum PodDecision: Equatable, Sendable {
    /// Admit as is: not labelled, or already mutated.
    case unchanged
    /// Admit with these JSONPatch operations (RFC 6902), in order.
    case patch([JSONValue])
    /// Refuse, with a message for `kubectl`.
    case denied(String)
}

/// Decides and computes the mutation of a pod. Pure: the same pod, namespace and policy give
/// the same answer, and a mutated pod gives ``PodDecision/unchanged`` (idempotent).
public struct PodMutator: Sendable {
    public let policy: InjectorPolicy

    public init(policy: InjectorPolicy) { self.policy = policy }

    /// Where the mutated pod finds things: all under `/run`, which the image measurement
    /// leaves out (a mount point anywhere else would change a converted image's measurement).
    public enum Paths {
        public static let root = "/run/veil-root"
        public static let simulationKey = "/run/veil-simulation-key"
        public static let run = "/run/veil"
        public static let launcher = "/run/veil-launcher"
        public static let initContainer = "veil-launcher-install"
    }

    public func decide(pod: JSONValue, namespace: String) -> PodDecision {
        guard let service = pod["metadata"]?["labels"]?[PodKeys.service]?.stringValue else { return .unchanged }
        if let problem = NameRule.serviceNameProblem(service) {
            return .denied("label \(PodKeys.service)=\(service): \(problem)")
        }
        let annotations = pod["metadata"]?["annotations"]?.objectValue ?? [:]
        let teeName = annotations[PodKeys.tee]?.stringValue ?? policy.defaultTEE.rawValue
        guard let tee = PodTEE(rawValue: teeName) else {
            return .denied("annotation \(PodKeys.tee)=\(teeName) is not one of \(PodTEE.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if tee == .simulated && !policy.simulationNamespaces.contains(namespace) {
            return .denied(
                "pod asks for the simulated TEE, which gives no confidentiality, but namespace '\(namespace)' is not configured for simulation "
                    + "(veil injector --simulation-namespaces); use a hardware TEE (\(PodKeys.tee): sgx or confidential-vm)")
        }
        guard let spec = pod["spec"]?.objectValue, let containers = spec["containers"]?.arrayValue, !containers.isEmpty else {
            return .denied("pod has no spec.containers")
        }
        var memoryPaths: [String] = []
        for path in (annotations[PodKeys.memoryPaths]?.stringValue ?? "").split(separator: ",").map({ String($0).trimmingWhitespace }) where !path.isEmpty {
            guard path.hasPrefix("/"), !path.split(separator: "/").contains("..") else {
                return .denied("annotation \(PodKeys.memoryPaths): '\(path)' is not an absolute path")
            }
            memoryPaths.append(path)
        }
        let selected = (annotations[PodKeys.containers]?.stringValue).map { Set($0.split(separator: ",").map { String($0).trimmingWhitespace }) }
        let names = containers.compactMap { $0["name"]?.stringValue }
        if let selected, let unknown = selected.subtracting(names).sorted().first {
            return .denied("annotation \(PodKeys.containers) names '\(unknown)', which is not a container of the pod")
        }
        if tee == .confidentialVM, let existing = spec["runtimeClassName"]?.stringValue, existing != policy.runtimeClass {
            return .denied("pod sets runtimeClassName '\(existing)'; confidential-vm pods run as '\(policy.runtimeClass)'")
        }

        var patch = JSONPatchBuilder()
        // Containers first: whether any command is wrapped decides the launcher volume.
        var wrapsCommand = false
        for (index, container) in containers.enumerated() {
            guard let name = container["name"]?.stringValue, selected?.contains(name) ?? true else { continue }
            let path = "/spec/containers/\(index)"
            wrapsCommand = addContainerChanges(container, at: path, service: service, tee: tee, memoryPaths: memoryPaths, into: &patch) || wrapsCommand
        }
        let volumes = podVolumes(tee: tee, memoryPaths: memoryPaths, launcher: wrapsCommand || containsInitContainer(spec))
        patch.appendMissing(to: "/spec/volumes", existing: spec["volumes"], key: "name", items: volumes)
        if wrapsCommand && !containsInitContainer(spec) {
            patch.appendMissing(to: "/spec/initContainers", existing: spec["initContainers"], key: "name", items: [(Paths.initContainer, launcherInstaller)])
        }
        if tee == .confidentialVM && spec["runtimeClassName"] == nil {
            patch.add("/spec/runtimeClassName", .string(policy.runtimeClass))
        }
        return patch.operations.isEmpty ? .unchanged : .patch(patch.operations)
    }

    /// The volumes an injected pod needs: the root certificate, the launcher's memory
    /// directories, the simulation key or the TSM interface, and the launcher binary when a
    /// command is wrapped.
    func podVolumes(tee: PodTEE, memoryPaths: [String], launcher: Bool) -> [(String, JSONValue)] {
        var volumes: [(String, JSONValue)] = [
            ("veil-root", .object(["name": .string("veil-root"), "configMap": .object(["name": .string(policy.rootConfigMap)])])),
            ("veil-run", memoryVolume("veil-run")),
        ]
        if tee == .simulated {
            // `optional: false` is Kubernetes' default, spelled out: podman 4.3's kube play crashes
            // on a secret volume without it (podman#16636).
            volumes.append(("veil-simulation-key", .object([
                "name": .string("veil-simulation-key"), "secret": .object(["secretName": .string(policy.simulationKeySecret), "optional": .bool(false)]),
            ])))
        }
        for index in memoryPaths.indices { volumes.append(("veil-memory-\(index)", memoryVolume("veil-memory-\(index)"))) }
        if launcher { volumes.append(("veil-launcher", memoryVolume("veil-launcher"))) }
        return volumes
    }

    /// Env, mounts, resources and the wrapped command of one container; returns whether its
    /// command runs (or already ran) through the copied launcher.
    private func addContainerChanges(
        _ container: JSONValue, at path: String, service: String, tee: PodTEE, memoryPaths: [String], into patch: inout JSONPatchBuilder
    ) -> Bool {
        var env: [(String, JSONValue)] = [
            (VeilEnvironment.service, service), (VeilEnvironment.coordinator, policy.coordinator), (VeilEnvironment.rootCA, Paths.root + "/root.pem"), (VeilEnvironment.tee, tee.launcherTEE),
        ].map { ($0.0, .object(["name": .string($0.0), "value": .string($0.1)])) }
        if tee == .simulated {
            env.append((VeilEnvironment.simulationKey, .object(["name": .string(VeilEnvironment.simulationKey), "value": .string(Paths.simulationKey + "/key.pem")])))
        }
        patch.appendMissing(to: path + "/env", existing: container["env"], key: "name", items: env)

        let command = container["command"]?.stringArray
        let launcherEntrypoint = self.launcherEntrypoint
        let alreadyWrapped = command.map { $0.starts(with: launcherEntrypoint) } ?? false
        let wraps = command.map { !$0.isEmpty } ?? false

        var mounts: [(String, JSONValue)] = [
            (Paths.root, mount("veil-root", Paths.root, readOnly: true)),
            (Paths.run, mount("veil-run", Paths.run, readOnly: false)),
        ]
        if tee == .simulated { mounts.append((Paths.simulationKey, mount("veil-simulation-key", Paths.simulationKey, readOnly: true))) }
        for (index, memoryPath) in memoryPaths.enumerated() { mounts.append((memoryPath, mount("veil-memory-\(index)", memoryPath, readOnly: false))) }
        if wraps { mounts.append((Paths.launcher, mount("veil-launcher", Paths.launcher, readOnly: true))) }
        patch.appendMissing(to: path + "/volumeMounts", existing: container["volumeMounts"], key: "mountPath", items: mounts)

        if tee == .sgx {
            let limits = container["resources"]?["limits"]?.objectValue
            if container["resources"] == nil { patch.add(path + "/resources", .object([:])) }
            if limits == nil { patch.add(path + "/resources/limits", .object([:])) }
            for (resource, amount) in [("sgx.intel.com/epc", policy.sgxEPC), ("sgx.intel.com/enclave", "1")] where limits?[resource] == nil {
                patch.add(path + "/resources/limits/" + JSONPointer.escape(resource), .string(amount))
            }
        }
        if let command, wraps, !alreadyWrapped {
            patch.replace(path + "/command", .array((launcherEntrypoint + ["launch", "--"] + command).map { .string($0) }))
        }
        return wraps
    }

    /// The copied launcher's entrypoint inside app containers.
    var launcherEntrypoint: [String] {
        let launcher = Paths.launcher + "/bin/veil-launcher"
        guard let loader = policy.launcherLoader else { return [launcher] }
        return [Paths.launcher + "/lib/" + loader, "--library-path", Paths.launcher + "/lib", launcher]
    }

    private var launcherInstaller: JSONValue {
        .object([
            "name": .string(Paths.initContainer),
            "image": .string(policy.launcherImage),
            "command": .array(["/veil/bin/veil-launcher", "install", Paths.launcher].map { .string($0) }),
            "volumeMounts": .array([mount("veil-launcher", Paths.launcher, readOnly: false)]),
        ])
    }

    private func containsInitContainer(_ spec: [String: JSONValue]) -> Bool {
        spec["initContainers"]?.arrayValue?.contains { $0["name"]?.stringValue == Paths.initContainer } ?? false
    }

    private func memoryVolume(_ name: String) -> JSONValue {
        .object(["name": .string(name), "emptyDir": .object(["medium": .string("Memory")])])
    }

    private func mount(_ name: String, _ path: String, readOnly: Bool) -> JSONValue {
        var fields: [String: JSONValue] = ["name": .string(name), "mountPath": .string(path)]
        if readOnly { fields["readOnly"] = .bool(true) }
        return .object(fields)
    }
}
