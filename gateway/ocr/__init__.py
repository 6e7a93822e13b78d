"""OCR of container codes (ISO 6346) and licence plates from camera crops, on the CPU.

- :mod:`gateway.ocr.engine`: the OCR engine protocol and the RapidOCR engine;
- :mod:`gateway.iso6346`, :mod:`gateway.ocr.container`: container codes;
- :mod:`gateway.ocr.plate`: Vietnamese and Chinese plates;
- :mod:`gateway.ocr.voting`: one result per passage from several frames;
- :mod:`gateway.ocr.worker`: the engine in a worker process, off the event loop;
- :mod:`gateway.ocr.cli`: ``gatewayctl ocr IMAGE``.

The engine is an optional dependency (extra ``ocr``): only the engine module imports it.
"""
