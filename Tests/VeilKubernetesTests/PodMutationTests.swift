import Testing
@testable import VeilKubernetes
import VeilCore

/// The injector's decisions, pod by pod; the patches themselves are applied with a standard
/// JSONPatch library against real AdmissionReviews in KubernetesTests.
@Suite struct PodMutationTests {
    let mutator: PodMutator = {
        var policy = InjectorPolicy(defaultTEE: .simulated, coordinator: "veil-coordinator.veil-system.svc:2001", launcherImage: "veil:test")
        policy.simulationNamespaces = ["dev"]
        return PodMutator(policy: policy)
    }()

    func pod(labels: [String: String] = [:], annotations: [String: String] = [:], containers: [JSONValue]? = nil, extra: [String: JSONValue] = [:]) -> JSONValue {
        var spec: [String: JSONValue] = ["containers": .array(containers ?? [.object(["name": .string("app"), "image": .string("redis")])])]
        for (key, value) in extra { spec[key] = value }
        return .object([
            "apiVersion": .string("v1"), "kind": .string("Pod"),
            "metadata": .object([
                "name": .string("p"), "labels": .object(labels.mapValues { .string($0) }), "annotations": .object(annotations.mapValues { .string($0) }),
            ]),
            "spec": .object(spec),
        ])
    }

    func operations(_ decision: PodDecision) -> [JSONValue] {
        guard case .patch(let operations) = decision else { return [] }
        return operations
    }

    @Test func podsWithoutTheLabelPassUnchanged() {
        #expect(mutator.decide(pod: pod(), namespace: "dev") == .unchanged)
        #expect(mutator.decide(pod: pod(labels: ["app": "x"]), namespace: "prod") == .unchanged)
    }

    @Test func simulationOutsideItsNamespacesIsDenied() {
        let decision = mutator.decide(pod: pod(labels: [PodKeys.service: "cache"]), namespace: "prod")
        guard case .denied(let message) = decision else { Issue.record("not denied: \(decision)"); return }
        #expect(message.contains("no confidentiality") && message.contains("'prod'") && message.contains("--simulation-namespaces"))
        #expect(!operations(mutator.decide(pod: pod(labels: [PodKeys.service: "cache"]), namespace: "dev")).isEmpty)
    }

    @Test func badLabelsAndAnnotationsAreDenied() {
        for (labels, annotations, expected) in [
            ([PodKeys.service: "Not_A_Name"], [:], "veil.dev/service"),
            ([PodKeys.service: "localhost"], [:], "veil.dev/service"),
            ([PodKeys.service: "cache"], [PodKeys.tee: "tpm"], "is not one of"),
            ([PodKeys.service: "cache"], [PodKeys.containers: "app,ghost"], "'ghost'"),
            ([PodKeys.service: "cache"], [PodKeys.memoryPaths: "relative/dir"], "not an absolute path"),
        ] as [([String: String], [String: String], String)] {
            let decision = mutator.decide(pod: pod(labels: labels, annotations: annotations), namespace: "dev")
            guard case .denied(let message) = decision else { Issue.record("not denied: \(labels) \(annotations)"); continue }
            #expect(message.contains(expected), "\(message)")
        }
        let conflicting = pod(labels: [PodKeys.service: "cache"], annotations: [PodKeys.tee: "confidential-vm"], extra: ["runtimeClassName": .string("runc")])
        #expect(mutator.decide(pod: conflicting, namespace: "dev") == .denied("pod sets runtimeClassName 'runc'; confidential-vm pods run as 'kata-cc-isolation'"))
    }

    @Test func commandsAreWrappedOnlyWhenExplicit() {
        let containers: [JSONValue] = [
            .object(["name": .string("app"), "image": .string("debian"), "command": .array([.string("/usr/bin/redis-server"), .string("--port"), .string("6379")])]),
            .object(["name": .string("converted"), "image": .string("redis-veil")]),
        ]
        let ops = operations(mutator.decide(pod: pod(labels: [PodKeys.service: "cache"], containers: containers), namespace: "dev"))
        let replaced = ops.filter { $0["op"]?.stringValue == "replace" }
        #expect(replaced.count == 1)
        #expect(replaced.first?["path"]?.stringValue == "/spec/containers/0/command")
        #expect(replaced.first?["value"]?.stringArray == [
            "/run/veil-launcher/lib/ld-linux-x86-64.so.2", "--library-path", "/run/veil-launcher/lib", "/run/veil-launcher/bin/veil-launcher", "launch", "--",
            "/usr/bin/redis-server", "--port", "6379",
        ])
        #expect(ops.contains { $0["path"]?.stringValue == "/spec/initContainers" })
    }

    @Test func sgxPodsGetEPCAndConfidentialVMPodsTheirRuntimeClass() {
        let sgx = operations(mutator.decide(pod: pod(labels: [PodKeys.service: "cache"], annotations: [PodKeys.tee: "sgx"]), namespace: "prod"))
        #expect(sgx.contains { $0["path"]?.stringValue == "/spec/containers/0/resources/limits/sgx.intel.com~1epc" && $0["value"]?.stringValue == "64Mi" })
        #expect(!sgx.contains { $0["path"]?.stringValue?.contains("simulation") == true })
        let cvm = operations(mutator.decide(pod: pod(labels: [PodKeys.service: "cache"], annotations: [PodKeys.tee: "confidential-vm"]), namespace: "prod"))
        #expect(cvm.contains { $0["path"]?.stringValue == "/spec/runtimeClassName" && $0["value"]?.stringValue == "kata-cc-isolation" })
        // Evidence comes from the guest API inside the VM: VEIL_TEE coco, no host path into the node.
        let text = String(decoding: (try? JSONValue.array(cvm).serialized()) ?? [], as: UTF8.self)
        #expect(text.contains(#"{"name":"VEIL_TEE","value":"coco"}"#), "\(text)")
        #expect(!text.contains("hostPath") && !text.contains("/sys/kernel/config/tsm"))
    }

    /// In confidential-VM clusters the coordinator itself runs in the confidential runtime class,
    /// on the guest API, without the simulation key; the render says what the cluster must provide.
    @Test func confidentialVMRenderRunsTheCoordinatorConfidentially() {
        var render = DeploymentRender(tee: .confidentialVM, image: "registry.invalid/veil@sha256:" + String(repeating: "0", count: 64))
        render.simulationKeyPEM = "-----BEGIN PRIVATE KEY-----\nnot used\n-----END PRIVATE KEY-----\n"
        let yaml = render.yaml()
        let coordinator = String(yaml[yaml.range(of: "kind: StatefulSet\nmetadata:\n  name: veil-coordinator")!.lowerBound...])
        #expect(coordinator.contains("runtimeClassName: kata-cc-isolation") && coordinator.contains("- \"--tee\"\n        - coco"), "\(coordinator.prefix(1500))")
        #expect(!yaml.contains("simulation-key") && !yaml.contains("PRIVATE KEY"))
        #expect(render.requirements.contains { $0.contains("RuntimeClass 'kata-cc-isolation'") && $0.contains("127.0.0.1:8006") })
        #expect(render.requirements.contains { $0.contains("RecoveryKeys") })
        var simulated = DeploymentRender(tee: .simulated, image: "registry.invalid/veil@sha256:" + String(repeating: "0", count: 64))
        simulated.simulationKeyPEM = "KEY"
        #expect(simulated.yaml().contains("- \"--tee\"\n        - simulated") && simulated.yaml().contains("simulation-key"))
        #expect(!simulated.yaml().contains("runtimeClassName"))
    }

    @Test func yamlQuotesWhatWouldChangeMeaning() {
        for (text, expected) in [("plain-name", "plain-name"), ("true", "\"true\""), ("yes", "\"yes\""), ("64Mi", "64Mi"), ("2379", "\"2379\""),
                                 ("a: b", "\"a: b\""), ("", "\"\""), ("line\nbreak", "\"line\\nbreak\""), ("0.5", "\"0.5\""), ("-x", "\"-x\"")] {
            #expect(YAMLNode.scalar(text) == expected, "\(text)")
        }
        #expect(YAMLNode.stream([.map([("a", [.map([("b", 1), ("c", "d")])]), ("e", .map([]))])]) == "---\na:\n- b: 1\n  c: d\ne: {}\n")
    }
}
