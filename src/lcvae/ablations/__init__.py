"""The paper's ablations as runs a user can repeat (``lcvae ablate``), one module per kind:

* :mod:`lcvae.ablations.evaluations`: post-training compression and the keep-ratio sweep (Table 4),
  and the challenging-content subsets (Table 7): evaluations tabulated side by side;
* :mod:`lcvae.ablations.selection`: adaptive top-k selections against the fixed mask over
  training (Fig. 12).
"""
