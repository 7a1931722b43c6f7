"""Not upstream: minibatch-std groups that share a label (train.py --label-groups=1).

D's minibatch standard deviation layer (networks.MinibatchStdLayer) shows D how much the images of
a group of `mbstd_group_size` differ. Upstream draws the reals and the fakes' labels at random, so
with many labels (100 shape clusters, say) almost every group mixes labels: D sees variety in every
group even when G draws one fixed image per label and ignores its latent. Here every group holds a
single label, for the reals and for the fakes alike: each group's label is that of a random image
(so labels keep the data's frequencies), the reals of the group are random images of that label,
and the fakes of each round get the same layout of labels. D then compares the spread of one
label's fakes with the spread of that label's reals, and a G that ignores its latent shows.

Layout: MinibatchStdLayer puts sample i of a round of N images into group i % (N / G), so a round
holds n = N / G labels, repeated G times (numpy.tile).
"""

import numpy as np
import torch

#----------------------------------------------------------------------------

def group_size(D_kwargs, batch_gpu):
    """The minibatch-std group size D uses on a round of batch_gpu images (as MinibatchStdLayer)."""
    size = D_kwargs.get('epilogue_kwargs', {}).get('mbstd_group_size', 4)
    return batch_gpu if size is None else min(int(size), batch_gpu)

def dataset_labels(dataset):
    """Integer label of every item of `dataset` (one-hot labels; x-flipped copies included)."""
    if dataset.label_dim < 2:
        raise ValueError('--label-groups groups images by their label: the dataset needs one-hot labels of at least two classes.')
    return np.array([int(np.argmax(dataset.get_label(idx))) for idx in range(len(dataset))], dtype=np.int64)

class LabelGroupSampler(torch.utils.data.Sampler):
    """Dataset indices forever, in rounds of `round_size`: round_size / group_size labels, each
    the label of a uniformly drawn image, and group_size images of each, in MinibatchStdLayer's
    layout. Each process (rank) draws its own rounds."""

    def __init__(self, dataset, round_size, group_size, rank=0, num_replicas=1, seed=0):
        super().__init__()
        if group_size < 1 or round_size % group_size != 0:
            raise ValueError(f'--label-groups: the round of {round_size} images is not divisible by the group size {group_size}.')
        self.labels = dataset_labels(dataset)
        self.members = [np.flatnonzero(self.labels == label) for label in range(int(self.labels.max()) + 1)]
        self.round_size = round_size
        self.group_size = group_size
        self.seed = (seed * num_replicas + rank) % 2**31

    def __iter__(self):
        rnd = np.random.RandomState(self.seed)
        per_round = self.round_size // self.group_size
        while True:
            anchors = rnd.randint(len(self.labels), size=per_round)
            groups = []
            for anchor in anchors:
                pool = self.members[self.labels[anchor]]
                pool = pool[pool != anchor] if pool.size > 1 else pool
                others = rnd.choice(pool, size=self.group_size - 1, replace=pool.size < self.group_size - 1)
                groups.append(np.concatenate([[anchor], others]))
            yield from np.stack(groups, axis=1).reshape(-1).tolist()    # [G, n] row-major: item i in group i % n

def grouped_labels(dataset, count, round_size, group_size):
    """Labels [count, c_dim] for the fakes, in rounds of round_size with the layout of the reals:
    each group's label is that of a random image (numpy's global RNG, as upstream's fake labels)."""
    per_round = round_size // group_size
    rounds = []
    for _ in range(count // round_size):
        anchors = np.stack([dataset.get_label(np.random.randint(len(dataset))) for _ in range(per_round)])
        rounds.append(np.tile(anchors, (group_size, 1)))
    return np.concatenate(rounds)

#----------------------------------------------------------------------------
