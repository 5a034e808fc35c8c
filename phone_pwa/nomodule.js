// Runs only in browsers without JavaScript modules, which cannot run the camera page either.
document.getElementById('big-state').textContent = 'This browser is too old to be a camera.';
