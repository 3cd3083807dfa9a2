//! The simulated GX as it shows itself on a LAN: SSDP, web page, Modbus TCP.
