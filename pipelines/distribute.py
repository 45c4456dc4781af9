"""Distributed training with TensorFlow's own engine: ``--strategy auto|one_device|mirrored|multi_worker``.

- ``mirrored``: every GPU of this machine holds a replica; each global batch is split between them.
- ``multi_worker``: several machines (or processes), each with its replicas, kept in step by all-reduce
  (``MultiWorkerMirroredStrategy``). The cluster comes from ``TF_CONFIG`` or from ``--workers host:port,...`` and
  ``--task-index``; worker 0 is the chief, the only one that writes the run dir and the export.
- ``one_device``: one GPU (or the CPU) explicitly; ``auto``: mirrored when several GPUs are visible, multi_worker
  when ``TF_CONFIG`` names several workers, else TensorFlow's default (no strategy).

The batch size given on the command line is per replica: the global batch is ``batch_size`` × replicas.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import tensorflow as tf

from pipelines.readers import DataError

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


@dataclass(frozen=True)
class Worker:
    """This process's place in the cluster."""

    index: int = 0
    count: int = 1

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def cluster_config(workers: str | None, task_index: int | None) -> dict | None:
    """The cluster as a ``TF_CONFIG`` dict: from ``--workers``/``--task-index`` or from the environment.

    Raises:
      DataError: ``--workers`` without ``--task-index`` (or out of range), or an unreadable ``TF_CONFIG``.
    """
    if workers:
        hosts = [w.strip() for w in workers.split(",") if w.strip()]
        if any(":" not in h for h in hosts):
            raise DataError(f"--workers must be host:port,host:port,...; got {workers!r}")
        if task_index is None or not 0 <= task_index < len(hosts):
            raise DataError(f"--task-index must be 0..{len(hosts) - 1} with {len(hosts)} --workers, got {task_index}")
        return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": task_index}}
    if task_index is not None:
        raise DataError("--task-index needs --workers (or give the cluster in TF_CONFIG)")
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
        config["cluster"]["worker"], config["task"]["index"]  # noqa: B018 (presence check)
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"TF_CONFIG is not a cluster spec with cluster.worker and task.index: {err}") from None
    return config


def make_strategy(name: str = "auto", workers: str | None = None, task_index: int | None = None):
    """Creates the strategy (call before any other TensorFlow work).

    Returns:
      (strategy, worker): the ``tf.distribute.Strategy`` (TensorFlow's default one for a plain single-device
      run) and this process's :class:`Worker`.

    Raises:
      DataError: an unknown strategy name, or a cluster spec that does not fit it.
    """
    if name not in STRATEGIES:
        raise DataError(f"unknown --strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    cluster = cluster_config(workers, task_index)
    n_workers = len(cluster["cluster"]["worker"]) if cluster else 1
    gpus = tf.config.list_physical_devices("GPU")  # (logical devices would start the runtime too early)
    if name == "auto":
        name = "multi_worker" if n_workers > 1 else "mirrored" if len(gpus) > 1 else "default"
    if name == "multi_worker":
        if cluster is None:
            raise DataError("--strategy multi_worker needs the cluster: --workers host:port,... and --task-index, "
                            "or TF_CONFIG")
        os.environ["TF_CONFIG"] = json.dumps(cluster)
        patch_keras_multi_worker()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return strategy, Worker(int(cluster["task"]["index"]), n_workers)
    if cluster is not None and n_workers > 1:
        raise DataError(f"a {n_workers}-worker cluster was given but --strategy is {name}; use multi_worker")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), Worker()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0"), Worker()
    return tf.distribute.get_strategy(), Worker()


def distributed_options(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Shards by data: every worker reads the whole (in-memory) dataset and keeps its part of each batch."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


_PATCHED = False


def patch_keras_multi_worker() -> None:
    """Works around two Keras 3 bugs that stop ``fit`` under MultiWorkerMirroredStrategy (keras-team/keras#20585,
    tensorflow/tensorflow#72388), both in Keras' TensorFlow trainer:

    - the metrics of a step are averaged across workers with ``reduce("MEAN", value, axis=0)``, which fails on
      scalars: they are averaged with ``axis=None`` here (so the logged loss is the mean over all workers);
    - building the model before the first step averages a data batch across workers, which fails on the
      ``PerReplica`` batch: the local batch is used for its shapes here, as on a single worker.
    """
    global _PATCHED
    if _PATCHED:
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    original_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    original_build = trainer.TensorFlowTrainer._maybe_symbolic_build

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not trainer._collective_all_reduce_multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tree.map_structure(
                lambda x: strategy.experimental_local_results(x)[0]
                if isinstance(x, tf.distribute.DistributedValues) else x, batch)
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    trainer.reduce_per_replica = reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    _PATCHED = True
