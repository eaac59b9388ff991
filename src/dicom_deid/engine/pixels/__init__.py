"""Pixel data in and out, for redacting burned-in text.

Redaction paints boxes into the stored pixel values, so the values must come out of
the file and go back into it without any other change. The modules, by what they do:

* :mod:`.decode`: ``decode`` gives every frame as one ``(frames, rows, columns,
  samples)`` array of *stored* values (no modality, VOI or palette applied), so what
  is painted is what is written; YBR_* colour comes out as RGB
  (``photometric_after_decode``). ``decode_frame`` is the same for one frame.
* :mod:`.grey`: 8-bit grey views: ``to_grey8`` (decoded frames, for text detection),
  ``frame_grey8`` (one frame of a dataset, the way a viewer shows it) and
  ``array_grey8`` (a raw array, no dataset).
* :mod:`.fill`: ``fill_value``, the stored value that paints 'black'.
* :mod:`.encode`: ``encode`` puts a painted array back, keeping the transfer syntax
  where pydicom can write it losslessly.
* :mod:`.native`: native pixel data without decoding: ``view`` (every frame as a view
  of the bytes) and ``paint`` (boxes painted into one copy, every other byte kept).
* :mod:`.jpeg_dct`: JPEG baseline through libjpeg-turbo: ``JpegFrames`` decodes every
  frame and paints boxes in the DCT domain (only the blocks under them change; frames
  that need no paint keep their bytes), checking each painted frame by decoding it.
* :mod:`.messages`: ``PixelError`` and the helpers that keep its messages free of
  values from the dataset.

Import names from the module that holds them; this package exports nothing itself.
"""
