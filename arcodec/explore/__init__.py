"""The toolkit around the models, one module per concern: ``model`` (the float copy a tool
works on), ``sampling`` (the one ancestral sampler), ``likelihood`` (log-probabilities),
``queries`` (the course's queries a..e), ``inpainting`` (f, g), ``enumeration`` (exact answers
on tiny models), ``bitsmap`` (where the bits go), ``flowviz`` (flow traversals), and the
figures that show them (``figures``, ``plots``)."""
