"""The QuantizedModel resource: one model, the precisions to serve, and how to judge them.

Users write `spec`; the operator writes `status`. The CRD YAML is generated from these models
(`qmo crds`), so every description here is what `kubectl explain quantizedmodel.spec...` shows.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StringConstraints

from qmo.api.base import (
    QUALIFIED_NAME,
    ApiModel,
    Condition,
    ConfigMapKeyReference,
    Image,
    LabelValue,
    LocalObjectReference,
    ObjectName,
    Quantity,
    ResourceRequirements,
    Rule,
    SecretKeyReference,
    StatusModel,
    Toleration,
    cel_string,
    is_qualified_name,
    quantity_value,
)

KIND = "QuantizedModel"
# The name becomes the qmo.dev/model label on every child, and label values stop at 63.
MAX_NAME_LENGTH = 63
NAME_TOO_LONG = "a QuantizedModel name is at most 63 characters: it labels every object qmo creates"
PLURAL = "quantizedmodels"
SHORT_NAMES = ("qm",)


class Precision(StrEnum):
    """Weight/activation precision of a served variant."""

    AUTO = "auto"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4_AWQ = "int4-awq"
    INT4_GPTQ = "int4-gptq"
    # 4-bit floating point weights and activations, FP8 scales per block of 16 (Blackwell).
    NVFP4 = "nvfp4"


class KvCacheDtype(StrEnum):
    """Data type of the KV cache, set apart from the weight precision."""

    AUTO = "auto"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    NVFP4 = "nvfp4"
    INT4 = "int4"  # accepted by the enum only so the rule below can say why it is refused


class ModelFormat(StrEnum):
    HF = "hf"
    MODELOPT_PREQUANTIZED = "modelopt-prequantized"


class ModelDtype(StrEnum):
    BF16 = "bf16"
    FP16 = "fp16"


class EngineBackend(StrEnum):
    TENSORRT = "tensorrt"
    PYTORCH = "pytorch"


class GateTiming(StrEnum):
    BEFORE_TRAFFIC = "before-traffic"
    AFTER_ROLLOUT = "after-rollout"
    OFF = "off"


class OnRegression(StrEnum):
    ROLLBACK = "rollback"
    FALLBACK = "fallback"
    IGNORE = "ignore"


class InconclusiveAction(StrEnum):
    MORE_SAMPLES = "more-samples"  # evaluate again on more items, up to maxSamples
    PASS = "pass"
    REGRESS = "regress"


class BenchmarkMetric(StrEnum):
    EXACT_MATCH = "exact-match"
    MULTIPLE_CHOICE = "multiple-choice"
    PERPLEXITY = "perplexity"
    # HumanEval(+) items: the completion is run against the item's tests in the eval pod.
    CODE_EXECUTION = "code-execution"
    # MT-Bench items: two chat turns, each rated 1-10 by a judge endpoint.
    JUDGED = "judged"


# RE2 and Python `re` read this the same way, so the CEL rule and pydantic agree. No
# backslashes: CEL string literals would read them as escapes.
SOURCE_PATTERN = (
    r"^(hf://[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?"
    r"|s3://[a-z0-9][a-z0-9.-]*[a-z0-9](/[^ ]*)?"
    r"|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/[^ ]*)?)$"
)
# A reference model is built from the hub or an object store (a claim would need its own mount).
REFERENCE_SOURCE_PATTERN = (
    r"^(hf://[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?"
    r"|s3://[a-z0-9][a-z0-9.-]*[a-z0-9](/[^ ]*)?)$"
)
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
DEFAULT_ENGINE_IMAGE = "nvcr.io/nvidia/tensorrt-llm/release:1.2.1"


class ModelSize(ApiModel):
    """Architecture numbers the planner needs to estimate memory and pick tensor parallelism.

    Optional: without them qmo cannot estimate memory and uses tensor parallelism 1 unless
    `gpu.tensorParallel` says otherwise.
    """

    parameters_billions: float = Field(
        gt=0, le=10000, description="Parameter count in billions, e.g. 8.03 for Llama-3.1-8B."
    )
    num_layers: int = Field(ge=1, le=1000, description="Transformer layers (num_hidden_layers).")
    num_key_value_heads: int = Field(ge=1, le=1024, description="KV heads (GQA groups).")
    head_dim: int = Field(ge=1, le=1024, description="Dimension of one attention head.")


S3_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
S3_PREFIX = r"^[A-Za-z0-9!_.*'()/-]*$"
HTTP_URL = r"^https?://[^\s/?#]+(:[0-9]+)?/?$"


class S3Connection(ApiModel):
    """How pods reach an S3-compatible server. Each field left unset takes the value of the
    engine store's, then the operator's (the chart's engineStore.s3); no key or secret is ever
    written here."""

    endpoint: str | None = Field(
        default=None,
        max_length=512,
        pattern=HTTP_URL,
        description="Endpoint URL of an S3-compatible server (https://minio.storage:9000); "
        "unset: AWS S3 in the region.",
    )
    region: str | None = Field(
        default=None, max_length=64, pattern=r"^[a-z0-9-]+$", description="Region (us-east-1)."
    )
    path_style: bool | None = Field(
        default=None,
        description="Address buckets as <endpoint>/<bucket> (most self-hosted servers) instead "
        "of <bucket>.<endpoint>.",
    )
    ca_bundle: ConfigMapKeyReference | None = Field(
        default=None,
        description="A ConfigMap key holding the PEM CA bundle that signs the endpoint's "
        "certificate.",
    )
    credentials_secret_name: ObjectName | None = Field(
        default=None,
        description="A Secret in the model's namespace with AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, passed to pods by reference. Unset: the pods' workload "
        "identity (serviceAccountName).",
    )


class S3StoreSpec(S3Connection):
    """An S3-compatible bucket for artifacts. Fields left unset take the operator's defaults
    (the chart's engineStore.s3); no key or secret is ever written here."""

    bucket: str | None = Field(
        default=None,
        min_length=3,
        max_length=63,
        pattern=S3_BUCKET,
        description="Bucket name (it must exist).",
    )
    prefix: str | None = Field(
        default=None,
        max_length=512,
        pattern=S3_PREFIX,
        description="Key prefix inside the bucket; artifacts go to <prefix>/artifacts/<key>/.",
    )
    service_account_name: ObjectName | None = Field(
        default=None,
        description="ServiceAccount the pods that read or write the store run as, for workload "
        "identity (IRSA, EKS Pod Identity, GKE/Azure federation).",
    )


class ReferenceModel(ApiModel):
    """The full-precision model an already quantized source was made from: the gate builds its
    BF16 reference from it."""

    source: str = Field(
        min_length=1,
        max_length=1024,
        description="hf://ORG/NAME or s3://BUCKET/PATH of the full-precision checkpoint.",
    )
    revision: str | None = Field(default=None, max_length=128, description="Its revision.")

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"self.source.matches('{REFERENCE_SOURCE_PATTERN}')",
            message="model.reference.source must be hf://ORG/NAME or s3://BUCKET/PATH",
            check=lambda r: re.match(REFERENCE_SOURCE_PATTERN, r.source) is not None,
            field_path=".source",
        ),
    )


class ModelSpec(ApiModel):
    """Where the checkpoint comes from and what it is."""

    source: str = Field(
        min_length=1,
        max_length=1024,
        description=(
            "Checkpoint location: hf://ORG/NAME (Hugging Face), s3://BUCKET/PATH (object store) "
            "or pvc://CLAIM/PATH (a PersistentVolumeClaim in this namespace)."
        ),
    )
    revision: str | None = Field(
        default=None,
        max_length=128,
        description=(
            "Commit, tag or version of the checkpoint. Part of every cache key: pin it for "
            "reproducible builds. Unset means the source's latest (reported as UnpinnedRevision)."
        ),
    )
    credentials_secret_ref: SecretKeyReference | None = Field(
        default=None,
        description=(
            "Secret key holding the token for a gated source. Mounted into build Jobs by "
            "reference; the value is never copied into status, Events or logs."
        ),
    )
    format: ModelFormat = Field(
        default=ModelFormat.HF,
        description=(
            "hf: a full-precision Hugging Face checkpoint that qmo quantizes. "
            "modelopt-prequantized: an already quantized ModelOpt checkpoint "
            "(hf_quant_config.json), served as it is."
        ),
    )
    dtype: ModelDtype = Field(
        default=ModelDtype.BF16, description="Native dtype of the checkpoint (bf16 or fp16)."
    )
    size: ModelSize | None = Field(
        default=None, description="Architecture numbers for the memory-fit estimate."
    )
    reference: ReferenceModel | None = Field(
        default=None,
        description="For an already quantized source: the full-precision model it was made "
        "from, which the quality gate's BF16 reference is built from. Without it the gate has "
        "nothing to compare against and judges nothing.",
    )
    s3: S3Connection | None = Field(
        default=None,
        description="How build pods reach an s3:// source (model.source and "
        "model.reference.source). Each field unset is the engine store's when it is a bucket, "
        "else the operator's engineStore.s3: a source on the store's own server needs none.",
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.reference) || self.format == 'modelopt-prequantized'",
            message="model.reference names the full-precision model of an already quantized "
            "source: set it only with format modelopt-prequantized",
            check=lambda m: m.reference is None or m.format == ModelFormat.MODELOPT_PREQUANTIZED,
            field_path=".reference",
        ),
        Rule(
            cel="!has(self.s3) || self.source.startsWith('s3://') || (has(self.reference) && "
            "self.reference.source.startsWith('s3://'))",
            message="model.s3 says how to reach an s3:// source: set it only when model.source "
            "or model.reference.source is s3://",
            check=lambda m: (
                m.s3 is None
                or m.source.startswith("s3://")
                or (m.reference is not None and m.reference.source.startswith("s3://"))
            ),
            field_path=".s3",
        ),
        Rule(
            cel=f"self.source.matches('{SOURCE_PATTERN}')",
            message=("model.source must be hf://ORG/NAME, s3://BUCKET/PATH or pvc://CLAIM/PATH"),
            check=lambda m: re.match(SOURCE_PATTERN, m.source) is not None,
            field_path=".source",
        ),
    )


# Bounded so the API server can bound the cost of the CEL rules over the list.
GpuClassName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
]


class GpuSpec(ApiModel):
    """Which GPU classes to serve on, and how many GPUs per replica."""

    classes: list[GpuClassName] = Field(
        default_factory=lambda: ["auto"],
        max_length=32,
        description=(
            "GPU classes to build and serve for, as qmo names them in status.gpuClasses "
            "(e.g. h100, a100-80gb, l40s). auto: every class among schedulable GPU nodes."
        ),
    )
    tensor_parallel: Literal["auto", 1, 2, 4, 8] = Field(
        default="auto",
        description=(
            "GPUs per serving replica (tensor parallelism): 1, 2, 4, 8 or auto, the smallest "
            "size whose weights and KV cache fit GPU memory with headroom."
        ),
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!('auto' in self.classes) || size(self.classes) == 1",
            message="gpu.classes: auto cannot be combined with named GPU classes",
            check=lambda g: "auto" not in g.classes or len(g.classes) == 1,
            field_path=".classes",
        ),
        Rule(
            cel="self.classes.all(c, self.classes.exists_one(d, d == c))",
            message="gpu.classes must not name the same class twice",
            check=lambda g: len(set(g.classes)) == len(g.classes),
            field_path=".classes",
        ),
    )


class CalibrationSpec(ApiModel):
    """Data used to calibrate activation scales during quantization."""

    dataset: str = Field(
        default="cnn_dailymail",
        min_length=1,
        max_length=1024,
        description=(
            "A Hugging Face dataset name (needs hub access from the build node), or a path to a "
            "JSONL file with a 'text' field on the engine store (store:///calib/data.jsonl)."
        ),
    )
    samples: int = Field(default=512, ge=1, le=65536, description="Calibration samples.")
    max_seq_length: int = Field(
        default=512, ge=16, le=131072, description="Tokens per calibration sample."
    )


class QuantizationSpec(ApiModel):
    """How quantized variants are produced (NVIDIA ModelOpt post-training quantization)."""

    calibration: CalibrationSpec = Field(
        default_factory=CalibrationSpec, description="Calibration data."
    )
    awq_block_size: Literal[64, 128] = Field(
        default=128, description="Group size of INT4 AWQ/GPTQ weight scales."
    )
    smoothquant_alpha: float = Field(
        default=0.5, ge=0, le=1, description="SmoothQuant migration strength for int8."
    )
    exclude_modules: list[str] = Field(
        default_factory=lambda: ["lm_head"],
        max_length=256,
        description="Modules kept in high precision (the edges of the network are most fragile).",
    )
    # Unset (not a default value) so that the cache keys of every model built before it stay.
    nvfp4_algorithm: Literal["max", "awq-lite"] | None = Field(
        default=None,
        description="How nvfp4 scales are found: max (ModelOpt's NVFP4_DEFAULT_CFG, the "
        "default) or awq-lite (NVFP4_AWQ_LITE_CFG: activation-aware, slower to calibrate, "
        "smaller perplexity loss in qmo's GPU run).",
    )


class EngineStoreSpec(ApiModel):
    """Where build artifacts live: a ReadWriteMany claim, or an S3-compatible bucket that
    serving pods read through a node-local cache."""

    type: Literal["pvc", "s3"] | None = Field(
        default=None,
        description="pvc: the claim below; s3: the bucket in s3 (over the operator's defaults). "
        "Unset: the operator's default store (the chart's engineStore.type).",
    )
    s3: S3StoreSpec | None = Field(
        default=None, description="The bucket, when type is s3 (or the operator's is)."
    )
    claim_name: ObjectName = Field(
        default="qmo-engines",
        description="PersistentVolumeClaim (ReadWriteMany) that holds built artifacts.",
    )
    create: bool = Field(
        default=False, description="Create the claim if it does not exist (it is never deleted)."
    )
    size: Quantity = Field(default="500Gi", description="Size of a created claim (a quantity).")
    storage_class_name: ObjectName | None = Field(
        default=None, description="StorageClass of a created claim; unset means the default."
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.s3) || !has(self.type) || self.type == 's3'",
            message="engine.store.s3 is set but engine.store.type is pvc: set type: s3, or "
            "remove s3",
            check=lambda s: s.s3 is None or s.type in (None, "s3"),
            field_path=".s3",
        ),
        Rule(
            cel="!has(self.size) || quantity(self.size).compareTo(quantity('0')) > 0",
            message="engine.store.size must be above zero (such as 500Gi): it is the size of "
            "the claim qmo creates",
            check=lambda s: quantity_value(s.size) > 0,
            field_path=".size",
        ),
    )


class BuildScratch(ApiModel):
    """A volume of its own for each build pod's working disk (/tmp): the download, the
    quantized checkpoint and the engine before they are published."""

    size: Quantity = Field(
        description="Size of the volume (a quantity, such as 500Gi): room for the checkpoint, "
        "the quantized checkpoint and the engine."
    )
    storage_class_name: ObjectName | None = Field(
        default=None, description="StorageClass of the volume; unset means the default."
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="quantity(self.size).compareTo(quantity('0')) > 0",
            message="engine.build.scratch.size must be above zero (such as 500Gi)",
            check=lambda s: quantity_value(s.size) > 0,
            field_path=".size",
        ),
    )


class BuildSpec(ApiModel):
    """Resources and limits of the build Jobs (calibration needs far more memory than serving)."""

    gpus: Literal["auto", 1, 2, 4, 8] = Field(
        default="auto",
        description="GPUs per build Job; auto uses the serving tensor-parallel size.",
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )
    active_deadline_seconds: int = Field(
        default=14400, ge=60, le=604800, description="A build running longer than this fails."
    )
    backoff_limit: int = Field(default=1, ge=0, le=10, description="Retries of a failed build.")
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="CPU and memory of the build pod."
    )
    scratch: BuildScratch | None = Field(
        default=None,
        description="Unset: the build works on the node's own disk (an emptyDir), which must "
        "hold the checkpoint and the engine. Set: a volume of this size for each build pod, "
        "from the StorageClass (a generic ephemeral volume, deleted with the pod). Not part of "
        "the cache key.",
    )


class EngineSpec(ApiModel):
    """The TensorRT-LLM release to build and serve with, and its build limits."""

    backend: EngineBackend = Field(
        default=EngineBackend.TENSORRT,
        description=(
            "tensorrt: build a TensorRT engine per GPU class (TensorRT-LLM up to 1.2; needed for "
            "int8 SmoothQuant). pytorch: serve the quantized checkpoint directly."
        ),
    )
    image: Image = Field(
        default=DEFAULT_ENGINE_IMAGE,
        description="TensorRT-LLM release image that serves the model. Part of the cache key.",
    )
    builder_image: Image | None = Field(
        default=None,
        description="Image that runs qmo-builder; unset means the operator's configured default.",
    )
    max_batch_size: int = Field(default=64, ge=1, le=4096, description="Largest batch served.")
    max_seq_len: int = Field(
        default=8192, ge=128, le=1048576, description="Longest sequence (prompt + output)."
    )
    max_num_tokens: int | None = Field(
        default=None, ge=64, le=1048576, description="Tokens per engine step; unset: TRT-LLM's."
    )
    store: EngineStoreSpec = Field(
        default_factory=EngineStoreSpec, description="Where artifacts are written and read."
    )
    build: BuildSpec = Field(default_factory=BuildSpec, description="Build Job settings.")


# A public model name: what clients send as `model`. Letters, digits and . _ / : - (names such
# as meta-llama/Llama-3.1-8B-Instruct); no '@', which separates the precision.
PUBLIC_MODEL_NAME = r"^[A-Za-z0-9][-A-Za-z0-9_./:]*$"
# The Gateway API's own patterns for these fields, so the HTTPRoute qmo writes is accepted.
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"
NAMESPACE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# The routing header is written into the route with qmo's rights, so it may not be one that
# gateways and proxies route or trust by: an X- header, other than those that carry the
# client's address, host or path (X-Forwarded-*, X-Original-*, X-Real-IP, X-Host) or Envoy's
# own (X-Envoy-*). Host, :authority and hop-by-hop headers are not X- headers.
ROUTING_HEADER = r"(?i)^x-[a-z0-9]"
RESERVED_HEADER = r"(?i)^x-(forwarded-|original-|envoy-|real-ip$|host$)"


class GatewayReference(ApiModel):
    """A Gateway (or one of its listeners) the model's HTTPRoute attaches to."""

    name: ObjectName = Field(description="Name of the Gateway.")
    namespace: Annotated[str, StringConstraints(max_length=63, pattern=NAMESPACE)] | None = Field(
        default=None,
        description="Namespace of the Gateway; the model's own when unset. The Gateway's "
        "listener must allow routes from the model's namespace.",
    )
    section_name: ObjectName | None = Field(
        default=None, description="A listener of the Gateway, by name."
    )
    port: int | None = Field(default=None, ge=1, le=65535, description="A listener, by port.")


class RoutingSpec(ApiModel):
    """Publish the model through the Gateway API: an HTTPRoute that routes OpenAI requests by
    the model name they carry, as body-based routing puts it in a header."""

    parent_refs: list[GatewayReference] = Field(
        min_length=1, max_length=32, description="The Gateway(s) the HTTPRoute attaches to."
    )
    model_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=PUBLIC_MODEL_NAME,
        description="The name clients send as `model`; the resource's name when unset.",
    )
    precision_names: bool = Field(
        default=True,
        description="Also publish NAME@PRECISION (e.g. llama@int8) for each precision served; "
        "NAME alone gets the default precision.",
    )
    hostnames: list[Annotated[str, StringConstraints(max_length=253, pattern=HOSTNAME)]] = Field(
        default_factory=list, max_length=16, description="Hostnames the HTTPRoute matches."
    )
    header: Annotated[str, StringConstraints(max_length=256, pattern=HEADER_NAME)] = Field(
        default="X-Gateway-Model-Name",
        description="The request header that carries the model name. Body-based routing (the "
        "Gateway API Inference Extension) copies the request's `model` into this one. An X- "
        "header, other than X-Forwarded-*, X-Original-*, X-Envoy-*, X-Real-IP and X-Host.",
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"!has(self.header) || (self.header.matches({cel_string(ROUTING_HEADER)}) && "
            f"!self.header.matches({cel_string(RESERVED_HEADER)}))",
            message="routing.header must be an X- header other than X-Forwarded-*, "
            "X-Original-*, X-Envoy-*, X-Real-IP and X-Host: the route is written with qmo's "
            "rights, and a header gateways route or trust by (Host, :authority, "
            "X-Forwarded-Host, hop-by-hop headers) would let a model name steer other traffic",
            check=lambda r: (
                re.match(ROUTING_HEADER, r.header) is not None
                and re.match(RESERVED_HEADER, r.header) is None
            ),
            field_path=".header",
        ),
    )


class ScalingMetric(StrEnum):
    """The load signal of autoscaling, per replica (what trtllm-serve exports: see
    docs/autoscaling.md for the metric each reads)."""

    REQUESTS_WAITING = "requestsWaiting"
    REQUESTS_RUNNING = "requestsRunning"
    KV_CACHE_UTILIZATION = "kvCacheUtilization"


# Per replica: a few requests queued means the running batch is full; the KV cache near full
# means new requests wait for memory.
DEFAULT_TARGET = {
    ScalingMetric.REQUESTS_WAITING: 4.0,
    ScalingMetric.REQUESTS_RUNNING: 16.0,
    ScalingMetric.KV_CACHE_UTILIZATION: 0.8,
}


class ScalingEngine(StrEnum):
    """What applies the scaling: KEDA's ScaledObject, or a HorizontalPodAutoscaler on a Pods
    metric a metrics adapter serves. auto: KEDA where its CRDs are installed."""

    AUTO = "auto"
    KEDA = "keda"
    HPA = "hpa"


class AutoscalingSpec(ApiModel):
    """Each variant's replicas follow its load, within what its GPU class can hold."""

    min_replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Fewest replicas per variant. 0 (scale to zero) is refused: nothing holds "
        "requests while the first pod loads the model.",
    )
    max_replicas: int = Field(
        ge=1,
        le=1000,
        description="Most replicas per variant; qmo lowers it to what the GPU class can hold.",
    )
    metric: ScalingMetric = Field(
        default=ScalingMetric.REQUESTS_WAITING, description="The load signal, per replica."
    )
    target: float | None = Field(
        default=None,
        gt=0,
        le=100000,
        description="The signal's target average per replica: requests (default 4 waiting, or "
        "16 running), or for kvCacheUtilization a fraction up to 1 (default 0.8).",
    )
    scale_up_stabilization_seconds: int = Field(
        default=0, ge=0, le=3600, description="Window over which scale-up takes the lowest ask."
    )
    scale_down_stabilization_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="Window over which scale-down takes the highest ask (a model takes minutes "
        "to load: scale down slowly).",
    )
    engine: ScalingEngine = Field(
        default=ScalingEngine.AUTO,
        description="keda, hpa, or auto: KEDA where its CRDs are installed, else an HPA.",
    )
    prometheus_address: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^https?://[^\s]+$",
        description="The Prometheus KEDA queries (http(s)://host:port); the operator's "
        "default when unset.",
    )

    @property
    def per_replica_target(self) -> float:
        """The target, or the metric's default."""
        if self.target is not None:
            return self.target
        return DEFAULT_TARGET[self.metric]

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.minReplicas != 0",
            message="autoscaling.minReplicas 0 (scale to zero) is not supported: nothing would "
            "hold requests while the first pod loads the model (minutes); use 1 or more",
            check=lambda a: a.min_replicas != 0,
            field_path=".minReplicas",
        ),
        Rule(
            cel="self.minReplicas <= self.maxReplicas",
            message="autoscaling.minReplicas may not exceed maxReplicas",
            check=lambda a: a.min_replicas <= a.max_replicas,
            field_path=".minReplicas",
        ),
        Rule(
            cel="!has(self.target) || self.metric != 'kvCacheUtilization' || self.target <= 1.0",
            message="autoscaling.target for kvCacheUtilization is a fraction of the KV cache "
            "(at most 1, such as 0.8)",
            check=lambda a: (
                a.target is None
                or a.metric != ScalingMetric.KV_CACHE_UTILIZATION
                or a.target <= 1.0
            ),
            field_path=".target",
        ),
    )


class ServingSpec(ApiModel):
    """How each variant is served (trtllm-serve, OpenAI-compatible)."""

    replicas: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Fixed replicas per variant (1 when neither this nor autoscaling is set).",
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None,
        description="Replicas that follow the load instead of a fixed count (KEDA or an HPA).",
    )
    default: Precision = Field(
        default=Precision.AUTO,
        description=(
            "Precision behind the model's main Service. auto: the fastest that passed the "
            "quality gate, fp8 first."
        ),
    )
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the OpenAI API.")
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="CPU and memory of a serving pod."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=64, description="Tolerations for GPU node taints."
    )
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=32,
        description="Extra node labels a serving or build pod needs.",
    )
    startup_timeout_seconds: int = Field(
        default=1800,
        ge=60,
        le=86400,
        description="Time a pod may take to load the model before it is restarted.",
    )

    @property
    def wanted_replicas(self) -> int:
        """The replicas a variant needs ready to count as fully serving: the fixed count, or
        autoscaling's minimum (the scaler adds more under load)."""
        if self.autoscaling is not None:
            return self.autoscaling.min_replicas
        return 1 if self.replicas is None else self.replicas

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!(has(self.replicas) && has(self.autoscaling))",
            message="serving.replicas and serving.autoscaling exclude each other: with "
            "autoscaling the scaler sets replicas between minReplicas and maxReplicas; remove "
            "serving.replicas",
            check=lambda s: s.replicas is None or s.autoscaling is None,
        ),
        Rule(
            cel="!has(self.nodeSelector) || "
            f"self.nodeSelector.all(k, k.matches({cel_string(QUALIFIED_NAME)}))",
            message="serving.nodeSelector keys must be label keys (an optional DNS prefix and "
            "'/', then up to 63 letters, digits, '-', '_' or '.')",
            check=lambda s: all(is_qualified_name(k) for k in s.node_selector),
            field_path=".nodeSelector",
        ),
    )


class DatasetSource(ApiModel):
    """Where a benchmark's JSONL lives: one of configMap or path."""

    config_map: SecretKeyReference | None = Field(
        default=None, description="A ConfigMap key holding the JSONL (for small sets)."
    )
    path: str | None = Field(
        default=None, description="A path on the engine store, e.g. benchmarks/gsm8k.jsonl."
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.configMap) != has(self.path)",
            message="a benchmark dataset needs exactly one of configMap or path",
            check=lambda d: (d.config_map is None) != (d.path is None),
        ),
    )


class JudgeSpec(ApiModel):
    """The OpenAI-compatible endpoint that rates answers (MT-Bench's single-answer grading)."""

    url: str = Field(
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="Base URL without /v1, e.g. http://judge.llm.svc:8000 or an external one.",
    )
    model: str | None = Field(
        default=None, max_length=256, description="Model name; default: the first it lists."
    )
    api_key_secret_ref: SecretKeyReference | None = Field(
        default=None,
        description="A Secret key holding the judge's API key; it reaches the eval pod as an "
        "environment variable, never an argument, log line or status.",
    )


class LmEvalApi(StrEnum):
    COMPLETIONS = "completions"  # lm-eval's local-completions model
    CHAT = "chat"  # local-chat-completions


class TaskDirectory(ApiModel):
    """Where custom lm-eval task YAMLs (and their data files) live: one of configMap or path.
    Data files are named in the YAML by where the Job mounts them: /benchmarks/<configMap>/<key>
    or /store/<path>."""

    config_map: LocalObjectReference | None = Field(
        default=None, description="A ConfigMap whose keys are the task's files."
    )
    path: str | None = Field(
        default=None,
        max_length=1024,
        pattern=r"^[^\s]+$",
        description="A directory on the engine store, e.g. tasks/support-tickets.",
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.configMap) != has(self.path)",
            message="lmEval.include needs exactly one of configMap or path",
            check=lambda d: (d.config_map is None) != (d.path is None),
        ),
    )


class LmEvalTask(ApiModel):
    """An lm-evaluation-harness task (gsm8k, mmlu_pro, ifeval, or a custom one from local
    files) run against the candidate's and the baseline's OpenAI-compatible endpoints."""

    task: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_][-A-Za-z0-9_.]*$",
        description="The lm-eval task (or group) name, e.g. gsm8k.",
    )
    metric: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.-]+(,[-A-Za-z0-9_.]+)?$",
        description="The result to judge, as lm-eval names it: metric,filter, e.g. "
        "exact_match,strict-match for gsm8k or acc,none.",
    )
    num_fewshot: int | None = Field(default=None, ge=0, le=64, description="Few-shot examples.")
    api: LmEvalApi = Field(
        default=LmEvalApi.COMPLETIONS,
        description="completions (/v1/completions) or chat (/v1/chat/completions).",
    )
    tokenizer: str | None = Field(
        default=None,
        max_length=512,
        description="A Hugging Face tokenizer (hub id or path under /store), for tasks that "
        "score log-likelihoods; generation tasks need none.",
    )
    include: TaskDirectory | None = Field(
        default=None, description="Custom task YAMLs from local files (air-gapped clusters)."
    )


class BenchmarkSpec(ApiModel):
    """One benchmark the quality gate compares a variant on against the baseline: qmo-eval's
    JSONL format (`dataset`), an lm-evaluation-harness task (`lmEval`), or neither when an
    external system writes the reports."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$",
        description="Benchmark name, as QualityReports refer to it (e.g. mmlu-pro, gsm8k).",
    )
    metric: BenchmarkMetric = Field(
        default=BenchmarkMetric.EXACT_MATCH, description="How answers are scored."
    )
    higher_is_better: bool = Field(
        default=True, description="False for metrics where lower wins (perplexity, latency)."
    )
    dataset: DatasetSource | None = Field(
        default=None, description="Prompts for qmo-eval; unset when an external system reports."
    )
    samples: int | None = Field(
        default=None, ge=1, le=1000000, description="Evaluate at most this many items."
    )
    max_regression_percent: float | None = Field(
        default=None, ge=0, le=100, description="Threshold for this benchmark alone."
    )
    lm_eval: LmEvalTask | None = Field(
        default=None,
        description="Run this lm-evaluation-harness task instead of a qmo-eval dataset; "
        "samples becomes its limit.",
    )
    judge: JudgeSpec | None = Field(
        default=None, description="The judge endpoint of a `judged` (MT-Bench) benchmark."
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        le=8192,
        description="Tokens per answer for code-execution and judged benchmarks (default 512).",
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!(has(self.dataset) && has(self.lmEval))",
            message="a benchmark takes a dataset or an lmEval task, not both",
            check=lambda b: b.dataset is None or b.lm_eval is None,
        ),
        Rule(
            cel="has(self.judge) == (has(self.metric) && self.metric == 'judged')",
            message="a judged benchmark needs a judge, and only a judged benchmark takes one",
            check=lambda b: (b.judge is not None) == (b.metric == BenchmarkMetric.JUDGED),
        ),
    )


class SpeedProbeSpec(ApiModel):
    """How eval Jobs measure serving speed: streaming requests at concurrency 1 and at
    `concurrency`, against the candidate and the BF16 reference."""

    concurrency: int = Field(default=8, ge=1, le=256, description="The loaded concurrency.")
    requests: int = Field(
        default=32, ge=1, le=10000, description="Requests per endpoint and concurrency."
    )
    max_tokens: int = Field(default=128, ge=1, le=8192, description="Output tokens per request.")
    prompt_tokens: int = Field(
        default=256, ge=1, le=32768, description="About how long each prompt is, in words."
    )


class InconclusiveSpec(ApiModel):
    """What the gate does with a report whose interval straddles the threshold."""

    action: InconclusiveAction = Field(
        default=InconclusiveAction.MORE_SAMPLES,
        description="more-samples: evaluate the revision again on more items (twice as many, "
        "or as many as would likely resolve it), up to maxSamples per benchmark; past that, or "
        "when the dataset has no more, it counts as regressed. pass or regress: count it so.",
    )
    max_samples: int = Field(
        default=4000,
        ge=2,
        le=1000000,
        description="The most items a re-evaluation asks of one benchmark.",
    )


class QualitySpec(ApiModel):
    """The quality gate: every quantized variant is judged against the baseline precision."""

    gate: GateTiming = Field(
        default=GateTiming.AFTER_ROLLOUT,
        description=(
            "before-traffic: a new revision serves only after its report passes. after-rollout: "
            "it serves at once and is reverted when a report regresses. off: no gate."
        ),
    )
    baseline: Literal["bf16"] = Field(default="bf16", description="Reference precision.")
    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=list,
        max_length=32,
        description="Benchmarks to compare on; empty means reports come from an external system.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    max_regression_percent: float = Field(
        default=1.5,
        ge=0,
        le=100,
        description="A variant scoring worse than baseline by more than this percent regressed.",
    )
    confidence: float = Field(
        default=0.8,
        ge=0.5,
        le=0.999,
        description="Confidence of the regression's interval (two-sided). Regressed when all "
        "of it lies over the threshold, Pass when none of it does, Inconclusive otherwise.",
    )
    inconclusive: InconclusiveSpec = Field(
        default_factory=InconclusiveSpec,
        description="What an Inconclusive report does.",
    )
    on_regression: OnRegression = Field(
        default=OnRegression.ROLLBACK,
        description=(
            "rollback: return to the last good revision. fallback: move down the precision "
            "ladder toward quality (int4 -> int8 -> fp8 -> bf16). ignore: only report."
        ),
    )
    evaluator_image: Image | None = Field(
        default=None, description="Image of the eval Jobs; unset means the operator's default."
    )
    speed: SpeedProbeSpec | None = Field(
        default=None,
        description="Measure serving speed (time to first token, inter-token latency, output "
        "tokens/s) of each candidate and of the BF16 reference on the same GPU class.",
    )
    min_speedup: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="A variant whose output tokens/s is below this multiple of BF16's on the "
        "same GPU class (e.g. 1.2) regressed, like a quality regression. Measured at "
        "speed.concurrency (8 when speed is unset).",
    )


class QuantizedModelSpec(ApiModel):
    """Desired state of a QuantizedModel."""

    model: ModelSpec = Field(description="The checkpoint to quantize and serve.")
    precisions: list[Precision] = Field(
        default_factory=lambda: [Precision.AUTO],
        min_length=1,
        max_length=6,
        description=(
            "Precisions to serve: bf16, fp8 (E4M3), int8 (W8A8 SmoothQuant), int4-awq, "
            "int4-gptq, nvfp4 (Blackwell: compute capability 10.x, 12.x), or auto: nvfp4 on "
            "Blackwell when the quality gate is on (a loss falls back to fp8), fp8 on compute "
            "capability >= 8.9, int8 on Ampere, the model dtype elsewhere."
        ),
    )
    kv_cache_dtype: KvCacheDtype = Field(
        default=KvCacheDtype.AUTO,
        description=(
            "KV-cache dtype: auto (fp8 where the GPU has it, else int8 on the tensorrt backend, "
            "else the model dtype), bf16, fp8, int8, or nvfp4 (Blackwell only). There is no "
            "int4 KV cache."
        ),
    )
    gpu: GpuSpec = Field(default_factory=GpuSpec, description="GPU classes and parallelism.")
    quantization: QuantizationSpec = Field(
        default_factory=QuantizationSpec, description="Quantization and calibration settings."
    )
    engine: EngineSpec = Field(default_factory=EngineSpec, description="TensorRT-LLM settings.")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="Serving settings.")
    quality: QualitySpec = Field(default_factory=QualitySpec, description="The quality gate.")
    routing: RoutingSpec | None = Field(
        default=None,
        description="Publish NAME and NAME@PRECISION through a Gateway API HTTPRoute.",
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.precisions.all(p, self.precisions.exists_one(q, q == p))",
            message="precisions must not list the same precision twice",
            check=lambda s: len(set(s.precisions)) == len(s.precisions),
            field_path=".precisions",
        ),
        Rule(
            cel="!('auto' in self.precisions) || size(self.precisions) == 1",
            message="precision auto cannot be combined with explicit precisions",
            check=lambda s: Precision.AUTO not in s.precisions or len(s.precisions) == 1,
            field_path=".precisions",
        ),
        Rule(
            cel="self.kvCacheDtype != 'int4'",
            message=(
                "kvCacheDtype int4 is not available: TensorRT-LLM has no INT4 KV cache; the "
                "4-bit KV cache is nvfp4, which needs Blackwell (compute capability 10.0+)"
            ),
            check=lambda s: s.kv_cache_dtype != KvCacheDtype.INT4,
            field_path=".kvCacheDtype",
        ),
        Rule(
            cel="!('int8' in self.precisions) || self.engine.backend == 'tensorrt'",
            message=(
                "precision int8 (W8A8 SmoothQuant) needs engine.backend tensorrt: the "
                "TensorRT-LLM PyTorch backend has no SmoothQuant kernels"
            ),
            check=lambda s: (
                Precision.INT8 not in s.precisions or s.engine.backend == EngineBackend.TENSORRT
            ),
            field_path=".precisions",
        ),
        Rule(
            cel="self.kvCacheDtype != 'int8' || self.engine.backend == 'tensorrt'",
            message=(
                "kvCacheDtype int8 needs engine.backend tensorrt; use fp8 on the pytorch backend"
            ),
            check=lambda s: (
                s.kv_cache_dtype != KvCacheDtype.INT8 or s.engine.backend == EngineBackend.TENSORRT
            ),
            field_path=".kvCacheDtype",
        ),
        Rule(
            cel=(
                "self.model.format != 'modelopt-prequantized' || "
                "(size(self.precisions) == 1 && self.precisions[0] != 'auto')"
            ),
            message=(
                "a modelopt-prequantized checkpoint serves only the precision it was quantized "
                "to: list exactly that one precision"
            ),
            check=lambda s: (
                s.model.format != ModelFormat.MODELOPT_PREQUANTIZED
                or (len(s.precisions) == 1 and s.precisions[0] != Precision.AUTO)
            ),
            field_path=".precisions",
        ),
        Rule(
            cel=(
                "self.serving.default == 'auto' || 'auto' in self.precisions || "
                "self.serving.default in self.precisions"
            ),
            message="serving.default must be auto or one of the listed precisions",
            check=lambda s: (
                s.serving.default == Precision.AUTO
                or Precision.AUTO in s.precisions
                or s.serving.default in s.precisions
            ),
            field_path=".serving.default",
        ),
    )


class VariantBuild(StatusModel):
    """State of the build that produces a variant's artifact."""

    job: str | None = Field(default=None, description="Name of the build Job, if one runs.")
    state: str = Field(
        default="Pending", description="Pending, Running, Succeeded, Reused, Failed or Blocked."
    )
    reason: str | None = Field(default=None, description="CamelCase reason of the state.")
    message: str | None = Field(default=None, description="Details for humans.")
    artifact_path: str | None = Field(default=None, description="Artifact on the engine store.")


class VariantAutoscaling(StatusModel):
    """An autoscaled variant's range, as its scaler was given it."""

    engine: str = Field(description="What scales it: keda (a ScaledObject) or hpa.")
    min_replicas: int = Field(description="The scaler's minimum.")
    max_replicas: int = Field(
        description="The scaler's maximum: the spec's, or less where the GPU class holds less."
    )
    requested_max_replicas: int = Field(description="serving.autoscaling.maxReplicas.")
    replicas: int = Field(default=0, description="Replicas the Deployment runs now.")
    at_bound: bool = Field(
        default=False,
        description="It runs as many replicas as its GPU class can hold, fewer than the spec "
        "allows (CapacityExhausted).",
    )
    message: str = Field(default="", description="Its range and why.")
    route_weight: int | None = Field(
        default=None,
        description="Its share of the default route, where the default precision serves on "
        "several GPU classes: ready replicas times tokens/s per replica.",
    )
    tokens_per_second: float | None = Field(
        default=None,
        description="Tokens/s per replica behind the weight: measured by its QualityReport, or "
        "an estimate in relative units (see capacity).",
    )
    capacity: str | None = Field(
        default=None, description="measured (a QualityReport's speed) or estimated."
    )


class VariantQuality(StatusModel):
    """The quality verdict of a variant's current revision."""

    verdict: str = Field(
        default="Pending",
        description="Pending, Pass, Regressed, Inconclusive, Invalid or NotGated.",
    )
    counted_as: str | None = Field(
        default=None,
        description="What an Inconclusive verdict counts as (quality.inconclusive): Pass or "
        "Regressed; unset while a re-evaluation on more samples is awaited.",
    )
    worst_benchmark: str | None = Field(default=None, description="Benchmark with the worst delta.")
    worst_delta_percent: float | None = Field(
        default=None, description="Worst regression in percent of the baseline score."
    )
    report: str | None = Field(default=None, description="QualityReport that gave the verdict.")
    speedup: float | None = Field(
        default=None, description="Output tokens/s over BF16's on the same GPU class, measured."
    )
    evaluation_failed: str | None = Field(
        default=None,
        description="Why the eval Job of this revision left no report (qmo.dev/retry runs it "
        "again); unset while none failed.",
    )


class VariantStatus(StatusModel):
    """One served (class x precision) variant."""

    name: str = Field(description="Variant name: GPU class and precision, e.g. h100-fp8.")
    gpu_class: str = Field(description="GPU class the variant is built for and pinned to.")
    compute_capability: str | None = Field(default=None, description="SM of the class, e.g. 9.0.")
    precision: str = Field(description="Precision actually served.")
    requested_precision: str | None = Field(
        default=None, description="Precision asked for, when a fallback changed it."
    )
    kv_cache_dtype: str | None = Field(default=None, description="KV-cache dtype served.")
    tensor_parallel: int | None = Field(default=None, description="GPUs per replica.")
    memory_estimate_gib: float | None = Field(
        default=None, description="Estimated GPU memory per GPU (weights + KV) in GiB."
    )
    cache_key: str | None = Field(default=None, description="Content key of the artifact.")
    phase: str = Field(
        default="Pending",
        description="Pending, Building, Deploying, Evaluating, Serving, RolledBack, Unsupported.",
    )
    reason: str | None = Field(default=None, description="CamelCase reason of the phase.")
    message: str | None = Field(default=None, description="Details for humans.")
    build: VariantBuild = Field(default_factory=VariantBuild, description="Build state.")
    deployment: str | None = Field(default=None, description="Deployment serving the variant.")
    service: str | None = Field(default=None, description="Service of the variant.")
    ready_replicas: int = Field(default=0, description="Ready serving replicas.")
    revision: str | None = Field(default=None, description="Cache key currently served.")
    last_good_revision: str | None = Field(
        default=None, description="Last cache key that passed the quality gate."
    )
    quality: VariantQuality = Field(default_factory=VariantQuality, description="Quality verdict.")
    autoscaling: VariantAutoscaling | None = Field(
        default=None, description="Its autoscaling range (serving.autoscaling)."
    )


class GpuClassStatus(StatusModel):
    """A GPU class seen among schedulable nodes.

    What a class is, not how many nodes it has: a count here would rewrite the status of
    every model each time a node joins or leaves. The metrics `qmo_gpu_class_nodes` and
    `qmo_gpu_class_gpus` count them.
    """

    name: str = Field(description="Class name, e.g. h100.")
    product: str = Field(description="nvidia.com/gpu.product of its nodes.")
    compute_capability: str | None = Field(default=None, description="SM, e.g. 9.0.")
    memory_mib: int | None = Field(
        default=None, alias="memoryMiB", description="Memory of one GPU in MiB."
    )


class StatusSummary(StatusModel):
    """Short strings for `kubectl get qm` printer columns."""

    precisions: str = Field(default="", description="Precision per GPU class, e.g. h100=fp8.")
    quality: str = Field(default="", description="Worst verdict across variants.")
    serving: str = Field(default="", description="Variant behind the main Service.")
    speedup: str = Field(
        default="", description="Measured speed-up over BF16 per variant, e.g. h100-fp8=1.42x."
    )
    replicas: str = Field(
        default="",
        description="Ready replicas per variant, autoscaled ones with their range, e.g. "
        "h100-fp8=3(1-6).",
    )


class QuantizedModelStatus(StatusModel):
    """Observed state of a QuantizedModel, written only by the operator."""

    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the status was computed from."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Building, QualityGate, Degraded and RolledBack.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    variants: list[VariantStatus] = Field(
        default_factory=list,
        description="One entry per (GPU class x precision) variant.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    gpu_classes: list[GpuClassStatus] = Field(
        default_factory=list,
        description="GPU classes seen among schedulable nodes (their node and GPU counts are "
        "the qmo_gpu_class_nodes and qmo_gpu_class_gpus metrics).",
    )
    unknown_gpus: list[str] = Field(
        default_factory=list,
        description="GPU products on schedulable nodes that qmo cannot place variants on "
        "(the Degraded condition says why; the qmo_unknown_gpu_nodes metric counts their "
        "nodes).",
    )
    service: str | None = Field(default=None, description="The model's main Service.")
    summary: StatusSummary = Field(default_factory=StatusSummary, description="Printer columns.")
    retried: str | None = Field(
        default=None,
        description="The last qmo.dev/retry annotation value acted on: failed builds and "
        "evaluations were started again.",
    )


class QuantizedModel(ApiModel):
    """A model served at one or more precisions on every GPU class, gated on quality."""

    api_version: Literal["qmo.dev/v1alpha1"] = Field(default="qmo.dev/v1alpha1")
    kind: Literal["QuantizedModel"] = Field(default="QuantizedModel")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: QuantizedModelSpec
    status: QuantizedModelStatus | None = None

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
            message=NAME_TOO_LONG,
            check=lambda m: len(str(m.metadata.get("name", ""))) <= MAX_NAME_LENGTH,
        ),
    )


# Reference to a QuantizedModel in the same namespace (used by QualityReport).
ModelReference = LocalObjectReference
