"""OCR of container codes (ISO 6346) and licence plates from camera crops, on the CPU.

- :mod:`drivers.camera.ocr.engine`: the OCR engine protocol and the RapidOCR engine;
- :mod:`gateway.iso6346`, :mod:`drivers.camera.ocr.container`: container codes;
- :mod:`drivers.camera.ocr.plate`: Vietnamese and Chinese plates;
- :mod:`drivers.camera.ocr.voting`: one result per passage from several frames;
- :mod:`drivers.camera.ocr.worker`: the engine in a worker process, off the event loop;
- :mod:`drivers.camera.ocr.cli`: ``gatewayctl ocr IMAGE``.

The engine is an optional dependency (extra ``ocr``): only the engine module imports it.
"""
