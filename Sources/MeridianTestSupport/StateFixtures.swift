/// Records in the shapes agents and control planes write into `cilium/state`, for tests of
/// what is imported and how.
public enum StateFixtures {
    public static func node(cluster: String, id: UInt32, name: String, ip: String, podCIDR: String) -> String {
        """
        {"Name":"\(name)","Cluster":"\(cluster)","ClusterID":\(id),"IPAddresses":[{"Type":"InternalIP","IP":"\(ip)"}],\
        "IPv4AllocCIDR":"\(podCIDR)","Source":"custom-resource","EncryptionKey":0,"Labels":{},"Annotations":{}}
        """
    }

    public static func endpoint(ip: String, identity: UInt32, hostIP: String, namespace: String = "default", pod: String) -> String {
        """
        {"IP":"\(ip)","HostIP":"\(hostIP)","ID":\(identity),"Key":0,"Metadata":"","K8sNamespace":"\(namespace)","K8sPodName":"\(pod)"}
        """
    }

    public static func identityLabels(app: String, namespace: String = "default", cluster: String) -> String {
        "k8s:app=\(app);k8s:io.cilium.k8s.policy.cluster=\(cluster);k8s:io.kubernetes.pod.namespace=\(namespace);"
    }
}
