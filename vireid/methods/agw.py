"""AGW and the paper's additions to it, as methods (rows of the paper's ablation).

==================  =====================================================
``agw``             AGW baseline: two-stream ResNet, non-local, GeM, BNNeck; ID + WRT
``agw_fgfl``        + FGFL: 6 horizontal part features, each with its classifier
``agw_fgfl_cmimpl`` + CMIMPL: modality-specific classifiers with cross prediction (the paper's model)
==================  =====================================================

All three are one network (vireid.models.network) and one loss
(vireid.losses.ReIDLoss) with different switches; ``model.parts`` and
``model.cmimpl`` set in a config win over the method's values.
"""

from __future__ import annotations

from vireid.losses import ReIDLoss
from vireid.methods.registry import Method, register_method
from vireid.models.network import build_model

for name, parts, cmimpl in (("agw", 0, False), ("agw_fgfl", 6, False), ("agw_fgfl_cmimpl", 6, True)):
    register_method(Method(name, build_model, ReIDLoss, {"model": {"parts": parts, "cmimpl": cmimpl}}))
