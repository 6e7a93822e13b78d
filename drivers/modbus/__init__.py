"""Modbus RTU and TCP devices: register maps from config, polled on pymodbus."""
