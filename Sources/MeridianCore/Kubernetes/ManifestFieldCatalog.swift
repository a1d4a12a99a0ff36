/// Every type `meridian apply` reads, with the fields Meridian decodes and the fields Kubernetes
/// (or Cilium) defines for it that Meridian accepts and drops. A field in neither list is refused.
/// When Kubernetes adds a field to one of these types, it goes in `ignored` here (or is decoded).
extension ManifestFields {
    // MARK: Objects

    /// Any object, checked before its kind is known, so that `Kind:` is reported as a misspelt
    /// `kind` rather than as a missing one.
    static let anyObject = ManifestFields(
        "a Kubernetes object", read: ["apiVersion", "kind", "metadata", "spec", "specs"], ignored: ["status"])

    /// The top-level fields of each kind.
    static func object(_ kind: ResourceKind) -> ManifestFields {
        let common = ["apiVersion", "kind", "metadata"]
        return switch kind {
        case .namespace:
            ManifestFields(kind.rawValue, read: common, ignored: ["spec", "status"])
        case .service, .pod, .deployment, .networkPolicy:
            ManifestFields(kind.rawValue, read: common + ["spec"], ignored: ["status"])
        case .ciliumNetworkPolicy, .ciliumClusterwideNetworkPolicy:
            ManifestFields(kind.rawValue, read: common + ["spec", "specs"], ignored: ["status"])
        case .serviceExport, .serviceImport:
            ManifestFields(kind.rawValue, read: common, ignored: ["spec", "status"])
        case .clusterProperty:
            ManifestFields(kind.rawValue, read: common + ["spec"], ignored: ["status"])
        }
    }

    static let objectMeta = ManifestFields(
        "ObjectMeta",
        read: ["name", "namespace", "labels", "annotations", "uid", "creationTimestamp"],
        ignored: [
            "generateName", "selfLink", "resourceVersion", "generation", "deletionTimestamp",
            "deletionGracePeriodSeconds", "ownerReferences", "finalizers", "managedFields",
        ]
    )

    /// A pod template's metadata is an `ObjectMeta` of which only labels and annotations matter:
    /// each pod made from it gets its own name (kubectl writes `creationTimestamp: null` here).
    static let podTemplateMetadata = ManifestFields(
        "ObjectMeta", read: ["labels", "annotations"], ignored: Array(objectMeta.all.subtracting(["labels", "annotations"])))

    static let labelSelector = ManifestFields("LabelSelector", read: ["matchLabels", "matchExpressions"])
    static let labelSelectorRequirement = ManifestFields("LabelSelectorRequirement", read: ["key", "operator", "values"])

    // MARK: Services

    static let clusterPropertySpec = ManifestFields("ClusterPropertySpec", read: ["value"])

    static let serviceSpec = ManifestFields(
        "ServiceSpec",
        read: ["type", "clusterIP", "clusterIPs", "selector", "ports", "sessionAffinity", "externalName"],
        ignored: [
            "allocateLoadBalancerNodePorts", "externalIPs", "externalTrafficPolicy", "healthCheckNodePort",
            "internalTrafficPolicy", "ipFamilies", "ipFamilyPolicy", "loadBalancerClass", "loadBalancerIP",
            "loadBalancerSourceRanges", "publishNotReadyAddresses", "sessionAffinityConfig", "trafficDistribution",
        ]
    )

    static let servicePort = ManifestFields(
        "ServicePort", read: ["name", "protocol", "port", "targetPort", "nodePort"], ignored: ["appProtocol"])

    // MARK: Workloads

    static let deploymentSpec = ManifestFields(
        "DeploymentSpec",
        read: ["replicas", "selector", "template", "strategy"],
        ignored: ["minReadySeconds", "paused", "progressDeadlineSeconds", "revisionHistoryLimit"]
    )

    static let deploymentStrategy = ManifestFields("DeploymentStrategy", read: ["type", "rollingUpdate"])
    static let rollingUpdateDeployment = ManifestFields("RollingUpdateDeployment", read: ["maxSurge", "maxUnavailable"])

    static let podTemplateSpec = ManifestFields("PodTemplateSpec", read: ["metadata", "spec"])

    static let podSpec = ManifestFields(
        "PodSpec",
        read: ["containers", "nodeName", "restartPolicy", "terminationGracePeriodSeconds", "hostname", "subdomain"],
        ignored: [
            "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "dnsConfig", "dnsPolicy",
            "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC", "hostNetwork", "hostPID",
            "hostUsers", "hostnameOverride", "imagePullSecrets", "initContainers", "nodeSelector",
            "os", "overhead", "preemptionPolicy", "priority", "priorityClassName", "readinessGates",
            "resourceClaims", "resources", "runtimeClassName", "schedulerName", "schedulingGates",
            "securityContext", "serviceAccount", "serviceAccountName", "setHostnameAsFQDN",
            "shareProcessNamespace", "tolerations",
            "topologySpreadConstraints", "volumes",
        ]
    )

    static let container = ManifestFields(
        "Container",
        read: ["name", "image", "command", "args", "ports", "env", "envFrom", "readinessProbe", "lifecycle"],
        ignored: [
            "imagePullPolicy", "livenessProbe", "resizePolicy", "resources",
            "restartPolicy", "restartPolicyRules", "securityContext", "startupProbe", "stdin", "stdinOnce",
            "terminationMessagePath", "terminationMessagePolicy", "tty", "volumeDevices", "volumeMounts",
            "workingDir",
        ]
    )

    static let containerPort = ManifestFields(
        "ContainerPort", read: ["name", "containerPort", "protocol"], ignored: ["hostIP", "hostPort"])

    static let envVar = ManifestFields("EnvVar", read: ["name", "value", "valueFrom"])

    /// `exec` and `grpc` are read only to be refused: the node probes over TCP and HTTP.
    static let probe = ManifestFields(
        "Probe",
        read: [
            "tcpSocket", "httpGet", "exec", "grpc", "initialDelaySeconds", "periodSeconds", "timeoutSeconds",
            "successThreshold", "failureThreshold",
        ],
        ignored: ["terminationGracePeriodSeconds"]
    )
    static let tcpSocketAction = ManifestFields("TCPSocketAction", read: ["port", "host"])
    static let httpGetAction = ManifestFields("HTTPGetAction", read: ["path", "port", "host", "scheme"], ignored: ["httpHeaders"])
    /// `postStart` and `stopSignal` are accepted and dropped; a preStop hook changes how a pod
    /// stops, so it is read (and refused unless it is a sleep).
    static let lifecycle = ManifestFields("Lifecycle", read: ["preStop"], ignored: ["postStart", "stopSignal"])
    static let lifecycleHandler = ManifestFields("LifecycleHandler", read: ["sleep", "exec", "httpGet", "tcpSocket"])
    static let sleepAction = ManifestFields("SleepAction", read: ["seconds"])

    // MARK: NetworkPolicy

    static let networkPolicySpec = ManifestFields(
        "NetworkPolicySpec", read: ["podSelector", "policyTypes", "ingress", "egress"])
    static let networkPolicyIngressRule = ManifestFields("NetworkPolicyIngressRule", read: ["from", "ports"])
    static let networkPolicyEgressRule = ManifestFields("NetworkPolicyEgressRule", read: ["to", "ports"])
    static let networkPolicyPeer = ManifestFields(
        "NetworkPolicyPeer", read: ["podSelector", "namespaceSelector", "ipBlock"])
    static let ipBlock = ManifestFields("IPBlock", read: ["cidr", "except"])
    static let networkPolicyPort = ManifestFields("NetworkPolicyPort", read: ["protocol", "port", "endPort"])

    // MARK: Cilium policies

    static let ciliumRule = ManifestFields(
        "Rule",
        read: [
            "endpointSelector", "nodeSelector", "ingress", "ingressDeny", "egress", "egressDeny",
            "enableDefaultDeny", "description",
        ],
        ignored: ["labels", "log"]
    )

    static let ciliumDefaultDeny = ManifestFields("DefaultDenyConfig", read: ["ingress", "egress"])

    /// An `ingress`/`ingressDeny` or `egress`/`egressDeny` element: the peer fields of its side,
    /// `toPorts`, and the fields of that side Meridian refuses.
    static func ciliumPeerRule<Side: CiliumRuleSide>(_: Side.Type) -> ManifestFields {
        let peers = ["Endpoints", "Entities", "CIDR", "CIDRSet"].map { Side.fieldPrefix + $0 }
        let typeName = Side.fieldPrefix == CiliumIngressSide.fieldPrefix ? "IngressRule" : "EgressRule"
        return ManifestFields(typeName, read: peers + ["toPorts"] + Side.unsupportedFields)
    }

    static let ciliumCIDRRule = ManifestFields("CIDRRule", read: ["cidr", "except", "cidrGroupRef", "cidrGroupSelector"])
    static let ciliumPortRule = ManifestFields("PortRule", read: ["ports"] + CiliumPolicyRule.unsupportedPortRuleFields)
    static let ciliumPortProtocol = ManifestFields("PortProtocol", read: ["port", "protocol", "endPort"])
}
