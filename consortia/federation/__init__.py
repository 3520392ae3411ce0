"""The only place that speaks Flower: the ClientApp, the ServerApp, our strategies, the engines.

* ``client``: the ClientApp, one handler per message type (mods attach per handler);
* ``server``: the ServerApp as phases: summaries -> rounds -> fine-tuning;
* ``strategies``: strategy names -> Flower's classes and Consortia's own, plus the wrapper that
  seeds sampling, continues the round count after a resume and saves checkpoints;
* ``engines``: in-process (a Grid in this process), Ray, and a real deployment.
"""
