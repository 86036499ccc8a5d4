"""CAJ: channel augmented joint learning (Ye et al., ICCV 2021).

It is the recipe of ``ICCV21_CAJ`` in mangye16/Cross-Modal-Re-ID-baseline (``train_ext.py``,
``data_loader.py``, ``ChannelAug.py``, ``loss.py``).

The network is AGW's, unchanged; the recipe is what changes:

- three views of each visible/infrared pair: the visible image with erasing, the same visible image
  again (its own crop, flip and erasing) with one channel copied into all three, and the infrared
  image with erasing and ``adaptive_gray`` (vireid.data.channel);
- erasing with probability 0.5 on every view (the re-ID form, CIFAR means as fill);
- the identity loss on every view, and the triplet in CAJ's adaptive form (ADP: alpha 1, gamma 1,
  squared difference) on the pre-BN features of every view, in one joint batch;
- 100 epochs (``range(0, 100)``), the same warm-up and steps as AGW;
- test features averaged with the flipped image (``testa.py``).

``model.method: caj`` sets these keys; with ``model.parts: 6`` and ``model.cmimpl: true`` it is the
paper's model trained with the CAJ recipe (``*_full_caj.yaml``). The reference's KL term is
computed with weight 0 and is left out.
"""

from __future__ import annotations

from vireid.method import ReferenceFormat, register_method
from vireid.methods.agw import CrossModalityMethod

CAJ_RECIPE = {
    "model": {"parts": 0, "cmimpl": False},
    "loss": {"triplet": "adp", "adp_alpha": 1.0, "adp_gamma": 1.0, "adp_square": True},
    "train": {
        "epochs": 100,
        "random_erasing": 0.5,
        "erasing": "reid",
        "visible_views": [[], ["channel_exchange"]],
        "infrared_views": [["adaptive_gray"]],
    },
    "test": {"flip": True},
}

CAJ_FORMAT = ReferenceFormat(
    "caj",
    "CAJ: ICCV21_CAJ train_ext.py's *_best.t, AGW's embed_net (its README links a SYSU-MM01 model)",
    "{dataset}_caj",
)

register_method(
    CrossModalityMethod(
        "caj",
        "CAJ: AGW's network with channel-augmented views, erasing and the ADP triplet (ICCV 2021)",
        CAJ_RECIPE,
        (CAJ_FORMAT,),
    )
)
