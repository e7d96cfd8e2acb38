import ArgumentParser
import Crypto
import Foundation
import VeilKubernetes
import VeilLauncherCommands

struct KubernetesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kubernetes", abstract: "Deploy Veil on Kubernetes.", subcommands: [Render.self])

    struct Render: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print every Kubernetes object a Veil deployment needs (kubectl apply -f -).",
            discussion: helpText("""
                Namespace, service accounts and RBAC, an etcd StatefulSet, the coordinator replicas on
                it with their Services, disruption budgets and network policies, and the injector with
                its TLS Secret and MutatingWebhookConfiguration. The injector's CA and serving key, etcd's
                CA with member and client certificates (etcd runs mutual TLS) and the simulation
                platform key are made fresh on every run unless --without-secrets leaves them out. See docs/kubernetes.md.
                """))

        @Option(help: ArgumentHelp("TEE of workload pods: \(PodTEE.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "tee"))
        var tee = "simulated"

        @Option(help: "Coordinator replicas.") var replicas = 3
        @Option(help: "etcd members.") var etcdReplicas = 3
        @Option(help: ArgumentHelp(
            "Veil's own image, best by digest (NAME@sha256:…): build it with `veil image self`, push it, pass the reference it prints.",
            valueName: "image"))
        var image: String
        @Option(help: ArgumentHelp("etcd image.", valueName: "image")) var etcdImage = "gcr.io/etcd-development/etcd:v3.5.17"
        @Option(help: ArgumentHelp("Namespace of the Veil components.", valueName: "name")) var namespace = "veil-system"
        @Option(help: ArgumentHelp("Namespaces whose pods may run simulated (comma-separated; --tee simulated).", valueName: "names"))
        var simulationNamespaces = "veil-dev"
        @Option(help: ArgumentHelp("Runtime class of confidential-vm pods.", valueName: "name")) var runtimeClass = "kata-cc-isolation"
        @Option(help: ArgumentHelp("EPC per container of sgx pods.", valueName: "quantity")) var sgxEpc = "64Mi"
        @Flag(help: "Leave out the Secrets (injector TLS, etcd TLS, simulation key) and the webhook's caBundle, e.g. for files kept in a repository.")
        var withoutSecrets = false

        func run() throws {
            guard let podTEE = PodTEE(rawValue: tee) else {
                throw ValidationError("--tee '\(tee)' is not one of \(PodTEE.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard replicas >= 1, etcdReplicas >= 1 else { throw ValidationError("--replicas and --etcd-replicas must be at least 1") }
            for (flag, reference) in [("--image", image), ("--etcd-image", etcdImage)] where !DeploymentRender.isPinned(reference) {
                warn("\(flag) \(reference) is a tag, not a digest: a registry can serve other bytes under it later; pin NAME@sha256:…")
            }
            var render = DeploymentRender(tee: podTEE, image: image)
            render.replicas = replicas
            render.etcdReplicas = etcdReplicas
            render.etcdImage = etcdImage
            render.namespace = namespace
            render.simulationNamespaces = simulationNamespaces.split(separator: ",").map(String.init)
            render.runtimeClass = runtimeClass
            render.sgxEPC = sgxEpc
            if !withoutSecrets {
                render.injectorTLS = try InjectorTLS.generate(service: "veil-injector", namespace: namespace)
                render.simulationKeyPEM = P256.Signing.PrivateKey().pemRepresentation
                render.etcdTLS = try EtcdTLS.generate(namespace: namespace)
            }
            print(render.yaml(), terminator: "")
            for need in render.requirements { FileHandle.standardError.write(Data("needs from the cluster: \(need)\n".utf8)) }
        }
    }
}
