/// Manifests the benchmarks and the integration tests share for a global service `web`: the
/// service itself (with extra annotations) and echo-server deployments whose pods' names tell
/// which deployment, and so which cluster, answered.
public enum LabWorkloads {
    /// The global Service `web` (port 80 → the pods' 8080), with `annotations` besides `global`.
    public static func globalWebService(_ annotations: [String: String] = [:]) -> String {
        let extra = annotations.sorted { $0.key < $1.key }.map { "    \($0.key): \"\($0.value)\"\n" }.joined()
        return """
            apiVersion: v1
            kind: Service
            metadata:
              name: web
              annotations:
                service.cilium.io/global: "true"
            \(extra)spec:
              selector:
                app: web
              ports:
              - port: 80
                targetPort: 8080
            ---

            """
    }

    /// The echo server as Deployment `name` of `web` pods, ready once it answers HTTP.
    public static func webDeployment(_ name: String, replicas: Int) -> String {
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: \(name)
        spec:
          replicas: \(replicas)
          selector:
            matchLabels: {app: web}
          template:
            metadata:
              labels: {app: web}
            spec:
              containers:
              - name: echo
                command: ["meridian", "tool", "echo-server", "--port", "8080"]
                readinessProbe:
                  httpGet: {path: /, port: 8080}
                  periodSeconds: 1
        ---

        """
    }
}
