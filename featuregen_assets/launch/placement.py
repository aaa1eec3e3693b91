"""What each kind of step asks a cluster for: op tags that dagster-ray's executor (Ray job
resources) and dagster-k8s (the step pod's container resources) read; other executors ignore
them.

A model step (an asset in the `gpu` pool) asks for one GPU unless the compute settings' device
is `cpu`, and for one CPU for its data loader; every other step (the download) for one CPU (its
work is asynchronous I/O) and no GPU. `build_defs` places the assets with its settings, so the
request follows `Settings.compute.device` however the definitions were built.

On a Ray cluster the request is fitted to the cluster's nodes when a run starts
(`fit_to_nodes`): with the device on `auto`, a model step on a cluster without a GPU asks for
none (it runs on the CPU there, as `auto` would choose); a request no node can ever serve fails
the run at once, naming the resource.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

from featuregen_assets.resources.models import GPU_POOL

RAY_TAG = "dagster-ray/config"
K8S_TAG = "dagster-k8s/config"
GPU_RESOURCE = "nvidia.com/gpu"


def gpus_per_model_step(device: str) -> int:
    """GPUs a model step needs on `device` (the compute settings'): none on the CPU, else one."""
    return 0 if device == "cpu" else 1


def _tags(num_cpus: int, num_gpus: int, memory: str) -> dict[str, dict]:
    limits = {GPU_RESOURCE: str(num_gpus)} if num_gpus else {}
    return {
        RAY_TAG: {"num_cpus": num_cpus, "num_gpus": num_gpus},
        K8S_TAG: {
            "container_config": {
                "resources": {
                    "requests": {"cpu": str(num_cpus), "memory": memory},
                    "limits": {"memory": memory, **limits},
                }
            }
        },
    }


def model_step_tags(device: str) -> dict[str, dict]:
    """Op tags of a model step on `device`: its GPU (unless on the CPU) and one CPU."""
    return _tags(num_cpus=1, num_gpus=gpus_per_model_step(device), memory="16Gi")


def download_step_tags() -> dict[str, dict]:
    """Op tags of the download step: one CPU, no GPU."""
    return _tags(num_cpus=1, num_gpus=0, memory="2Gi")


def _with_op_tags(asset: dg.AssetsDefinition, tags: Mapping[str, object]) -> dg.AssetsDefinition:
    """A copy of `asset` whose op carries `tags` besides its own (Dagster has no public call
    for this; the copy is what `OpDefinition.with_replaced_properties` builds, tags added)."""
    op = asset.op
    retagged = dg.OpDefinition.dagster_internal_init(
        name=op.name,
        ins={input_def.name: dg.In.from_definition(input_def) for input_def in op.input_defs},
        outs={output_def.name: dg.Out.from_definition(output_def) for output_def in op.output_defs},
        compute_fn=op.compute_fn,
        config_schema=op.config_schema,
        description=op.description,
        tags={**op.tags, **tags},
        required_resource_keys=op.required_resource_keys,
        code_version=op._version,  # as with_replaced_properties passes it
        retry_policy=op.retry_policy,
        version=None,
        pool=op.pool,
    )
    return dg.AssetsDefinition.dagster_internal_init(
        **{**asset.get_attributes_dict(), "node_def": retagged}
    )


def placed(assets: Iterable[dg.AssetsDefinition], device: str) -> list[dg.AssetsDefinition]:
    """The assets with the op tags of their kind of step: model steps for `device`, the rest
    as downloads."""
    return [
        _with_op_tags(
            asset, model_step_tags(device) if asset.op.pool == GPU_POOL else download_step_tags()
        )
        for asset in assets
    ]


class Unplaceable(ValueError):
    """A step asks a cluster for more than any of its nodes has."""


def amounts(resources: Mapping[str, float]) -> str:
    """`{"CPU": 1, "memory": 2**31}` as `1 CPU, 2.0 GiB memory`."""
    return ", ".join(
        f"{amount / 2**30:.1f} GiB memory" if name == "memory" else f"{amount:g} {name}"
        for name, amount in resources.items()
    )


def fit_to_nodes(
    step: str, request: Mapping[str, float], device: str, nodes: Sequence[Mapping[str, float]]
) -> dict[str, float]:
    """`request` as a cluster whose live nodes declare `nodes` can serve it: without its GPU
    when `device` is `auto` and no node has one. Raises `Unplaceable` naming the resource no
    node has enough of (a step waits for free resources, never for ones no node has)."""
    fitted = dict(request)
    if device == "auto" and not any(node.get("GPU") for node in nodes):
        fitted.pop("GPU", None)
    if any(all(node.get(name, 0) >= amount for name, amount in fitted.items()) for node in nodes):
        return fitted
    short = [
        name for name, amount in fitted.items() if all(node.get(name, 0) < amount for node in nodes)
    ] or list(fitted)
    largest = {name: max((node.get(name, 0) for node in nodes), default=0) for name in short}
    why = f" (FEATUREGEN_DEVICE={device})" if "GPU" in short else ""
    raise Unplaceable(
        f"{step} asks the Ray cluster for {amounts({n: fitted[n] for n in short})}{why},"
        f" and no node has that much (the most a node has: {amounts(largest)})"
    )
