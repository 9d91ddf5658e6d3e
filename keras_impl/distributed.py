"""Data parallelism for Keras 3 on TensorFlow: tf.distribute.MirroredStrategy, one replica per
device, as Keras's guide "Multi-GPU distributed training with TensorFlow" sets it up.

Every variable is created under `strategy.scope()` (a MirroredVariable: one copy per device,
kept equal); Keras's own TensorFlow trainer then runs the GAN's `train_step` once per replica
(`strategy.run`) on that replica's shard of the batch, and averages the logs over replicas.
What the replicas must agree on is done here, with TensorFlow's replica context, following the
TensorFlow guide "Custom training with tf.distribute.Strategy"
(https://www.tensorflow.org/tutorials/distribute/custom_training).

Each function is also callable on Keras's other backends and outside a strategy, where there
is one replica; TensorFlow is imported only on the TensorFlow backend.
"""

from __future__ import annotations

import functools
from typing import Any

import keras
import numpy as np


@functools.cache
def mirrored_strategy(devices: int):
    """A MirroredStrategy over the first `devices` GPUs, or, without GPUs, over as many logical
    devices of the CPU, which TensorFlow can only be given before it initialises its devices.
    One per width and process: a second strategy over the same devices starts its collectives'
    instance keys afresh, and its all-reduces then meet the first one's ("Shape mismatch in the
    collective instance")."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        found = tf.config.list_logical_devices("GPU")
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
        except RuntimeError:  # TensorFlow already initialised: only the devices it has
            pass
        found = tf.config.list_logical_devices("CPU")
    if len(found) < devices:
        raise RuntimeError(
            f"{devices} devices asked for, but TensorFlow has {len(found)} in this process; on a CPU the "
            "logical devices must be set before TensorFlow first runs: ask for them in a new process"
        )
    return tf.distribute.MirroredStrategy([device.name for device in found[:devices]])


def split(strategy, arrays: tuple, axes: tuple[int, ...]) -> tuple:
    """The global batch as each replica's shard, on that replica's device: replica r gets rows
    [r·B, (r+1)·B) of each array along its batch axis in `axes` (None stays None). What
    `strategy.experimental_distribute_dataset` does for `fit`, for one batch of numpy arrays."""
    import tensorflow as tf

    devices = strategy.extended.worker_devices

    def shards(context):
        r = context.replica_id_in_sync_group
        with tf.device(devices[r]):
            return tuple(
                None if array is None else tf.convert_to_tensor(np.split(array, len(devices), axis)[r])
                for array, axis in zip(arrays, axes)
            )

    return strategy.experimental_distribute_values_from_function(shards)


def replica() -> tuple[int, Any]:
    """(the number of replicas in sync, this replica's id): (1, 0) outside a strategy's replica
    context and on Keras's other backends."""
    if keras.backend.backend() != "tensorflow":
        return 1, 0
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: no one replica
        return 1, 0
    return context.num_replicas_in_sync, context.replica_id_in_sync_group


def assign(variables, values) -> None:
    """Each variable set to its value. In a tf.distribute strategy's replica context, through
    the strategy: each replica's copy is set to that replica's value (`extended.update` in a
    merge_call, as Keras's TensorFlow optimizer applies its updates), since a mirrored variable
    that aggregates nothing refuses a plain assignment there. Callers compute the same values
    on every replica, so the copies stay equal."""
    replicas, _ = replica()
    if replicas == 1:
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
        return
    import tensorflow as tf

    def update(strategy, values):
        for variable, value in zip(variables, values, strict=True):
            strategy.extended.update(variable.value, lambda copy, new: copy.assign(new), args=(value,), group=False)

    tf.distribute.get_replica_context().merge_call(update, args=(list(values),))


def all_sum(x):
    """x summed over the replicas (tf.distribute.ReplicaContext.all_reduce), in replica context;
    every replica gets the same sum."""
    import tensorflow as tf

    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, x)
