"""openrlhf_cfpo.launch_layout.check_verl_mini_batch: verl's runtime rule that a mini-batch's samples divide
over the data-parallel ranks (what verl's dry run and the verl grid check before launching)."""

import pytest

from openrlhf_cfpo.launch_layout import check_verl_mini_batch


@pytest.mark.parametrize("nnodes, batch_ratio, sequence_parallel, fits", [
    (1, 8, 1, True),    # 16 prompts x 3 = 48 samples over 8 ranks
    (4, 4, 1, True),    # 96 over 32
    (4, 8, 1, False),   # 48 over 32: the run verl would stop at its first update
    (4, 8, 2, True),    # 48 over 16 ranks (sequence parallelism shares a sample between 2 GPUs)
    (5, 1, 1, False),   # 384 over 40
])
def test_a_mini_batch_divides_over_the_data_parallel_ranks(nnodes, batch_ratio, sequence_parallel, fits):
    def check():
        check_verl_mini_batch(ppo_mini_batch_size=128 // batch_ratio, rollout_n=3, nnodes=nnodes, n_gpus_per_node=8,
                              ulysses_sequence_parallel_size=sequence_parallel)

    if fits:
        check()
        return
    samples, ranks = 128 // batch_ratio * 3, nnodes * 8 // sequence_parallel
    with pytest.raises(ValueError, match=f"= {samples} samples per optimizer step are not divisible by the "
                                         f"data-parallel size {ranks} ") as err:
        check()
    assert "\n" not in str(err.value)


def test_gpus_that_do_not_split_into_sequence_parallel_groups():
    with pytest.raises(ValueError, match="6 GPUs do not split into groups of .*ulysses_sequence_parallel_size=4"):
        check_verl_mini_batch(32, 3, 1, 6, ulysses_sequence_parallel_size=4)
