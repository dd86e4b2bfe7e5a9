"""The toolkit around the models: sampling, likelihood queries, inpainting, enumeration of
tiny models, bits maps, receptive fields, flow traversals, and the figures that show them."""
