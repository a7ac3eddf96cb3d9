"""Containers and clusters: the image entrypoint, tensor/pipeline-parallel launch, Kubernetes.

Modules (one job each):

- ``entrypoint``: profile in → CPU twin, or GPU engines (cached) served by tp x pp ranks;
- ``node``: the TensorRT-LLM version and GPUs of this node;
- ``cache``: where engines live per TensorRT-LLM version and GPU architecture; reuse, build or
  rebuild from the engine manifest; a file lock so replicas build one at a time;
- ``launch``: the mpirun / tritonserver command line (leader mode) and its environment;
- ``supervise``: run it as a child, forwarding SIGTERM so in-flight requests drain;
- ``multinode``: a LeaderWorkerSet group as MPI hosts; the worker pods' idle process;
- ``model_fetch``: download a missing checkpoint once (token from env or a mounted secret);
- ``k8s``, ``locust_k8s``, ``manifests``: Kubernetes objects rendered from build profiles;
- ``validate``: offline schema validation of those objects;
- ``cli``: ``tritonllm deploy entrypoint | worker | k8s``.
"""
