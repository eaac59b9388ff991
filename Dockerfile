# One image for every service of docker-compose.yaml: the Airflow components (with
# this project's plugins, DAGs and configs) and the local Cloud Healthcare API server.
FROM apache/airflow:3.3.2-python3.11

USER root
# Tesseract (burned-in text), DCMTK (JPEG-family test data, dcmdump), DejaVu fonts,
# libturbojpeg (JPEG baseline frames painted in the DCT domain).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng dcmtk \
       fonts-dejavu-core libturbojpeg0 \
    && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root requirements/lock.txt /opt/dicom-deid/requirements/lock.txt
RUN pip install --no-cache-dir -r /opt/dicom-deid/requirements/lock.txt
COPY --chown=airflow:root . /opt/dicom-deid
RUN pip install --no-cache-dir --no-deps /opt/dicom-deid
ENV DICOM_DEID_HOME=/opt/dicom-deid
